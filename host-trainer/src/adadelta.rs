//! Adadelta (Zeiler, 2012) as a burn optimizer, with Keras's defaults and update rule.
//!
//! Per parameter, with gradient `g`, learning rate `lr`, decay `rho` and `eps`:
//!
//! ```text
//! E[g²]  <- rho * E[g²]  + (1 - rho) * g²
//! delta   = -sqrt(E[Δ²] + eps) / sqrt(E[g²] + eps) * g
//! E[Δ²]  <- rho * E[Δ²]  + (1 - rho) * delta²
//! param  <- param + lr * delta
//! ```
//!
//! Keras applies the learning rate to the step but accumulates the unscaled `delta`; so does
//! this implementation, so that runs with `lr != 1` match Keras too.

use burn::optim::{LearningRate, ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::prelude::*;

/// Adadelta hyperparameters; [`Default`] gives Keras's (`lr` 1.0 is passed per step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adadelta {
    /// Decay of both running averages.
    pub rho: f32,
    /// Added under both square roots.
    pub epsilon: f32,
}

impl Default for Adadelta {
    fn default() -> Self {
        Self {
            rho: 0.95,
            epsilon: 1e-7,
        }
    }
}

impl Adadelta {
    /// The optimizer over a whole module.
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

/// The running averages kept for one parameter tensor.
#[derive(Clone)]
pub struct AdadeltaState<const D: usize> {
    square_grad: Tensor<D>,
    square_delta: Tensor<D>,
}

impl<const D: usize> RecordState for AdadeltaState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "square_grad", self.square_grad.clone().into_data());
        out.push_tensor(
            prefix,
            "square_delta",
            self.square_delta.clone().into_data(),
        );
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        Some(Self {
            square_grad: Tensor::from_data(src.take_tensor(prefix, "square_grad")?, device),
            square_delta: Tensor::from_data(src.take_tensor(prefix, "square_delta")?, device),
        })
    }
}

impl Optimizer for Adadelta {
    type State<const D: usize> = AdadeltaState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (square_grad, square_delta) = match state {
            Some(state) => (state.square_grad, state.square_delta),
            None => (grad.zeros_like(), grad.zeros_like()),
        };
        let keep = self.rho;
        let blend = 1.0 - self.rho;

        let square_grad = square_grad.mul_scalar(keep) + grad.clone().square().mul_scalar(blend);
        let delta = square_delta
            .clone()
            .add_scalar(self.epsilon)
            .sqrt()
            .div(square_grad.clone().add_scalar(self.epsilon).sqrt())
            .mul(grad);
        let square_delta = square_delta.mul_scalar(keep) + delta.clone().square().mul_scalar(blend);

        let updated = tensor - delta.mul_scalar(lr);
        (
            updated,
            Some(AdadeltaState {
                square_grad,
                square_delta,
            }),
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdadeltaState {
            square_grad: state.square_grad.to_device(device),
            square_delta: state.square_delta.to_device(device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::optim::GradientsParams;

    #[derive(Module, Debug)]
    struct Scalars {
        weights: Param<Tensor<1>>,
    }

    /// Two steps of loss = sum(w * x) (so the gradient is x) from w = [1, -2], with
    /// gradients [0.5, -1] then [0.25, 3], checked against values computed by hand:
    ///
    /// step 1, first weight: E[g²] = 0.05 * 0.25 = 0.0125;
    ///   delta = sqrt(1e-7) / sqrt(0.0125 + 1e-7) * 0.5 = 0.0014142080;
    ///   E[Δ²] = 0.05 * delta² = 1.0000e-7 (to 5 digits); w = 1 - delta = 0.9985858.
    /// step 2, first weight: E[g²] = 0.95 * 0.0125 + 0.05 * 0.0625 = 0.015;
    ///   delta = sqrt(1e-7 + 1e-7) / sqrt(0.015 + 1e-7) * 0.25 = 0.00091287;
    ///   w = 0.9985858 - 0.00091287 = 0.9976729.
    /// The second weight follows the same arithmetic: after step 1, E[g²] = 0.05,
    ///   delta = -0.0014142121, w = -1.9985858; after step 2, E[g²] = 0.0475 + 0.45 = 0.4975,
    ///   delta = sqrt(2e-7) / sqrt(0.4975001) * 3 = 0.0019021, w = -2.0004879.
    #[test]
    fn two_steps_match_hand_computed_values() {
        let device = Device::flex().autodiff();
        let mut module = Scalars {
            weights: Param::from_tensor(Tensor::from_floats([1.0, -2.0], &device)),
        };
        let mut optimizer = Adadelta::default().init();
        let mut after = Vec::new();
        for x in [[0.5f32, -1.0], [0.25, 3.0]] {
            let input = Tensor::<1>::from_floats(x, &device);
            let loss = (module.weights.val() * input).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &module);
            module = optimizer.step(1.0, module, grads);
            after.push(
                module
                    .weights
                    .val()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap(),
            );
        }
        let expected = [[0.998_585_8, -1.998_585_8], [0.997_672_9, -2.000_487_9]];
        for (got, want) in after.iter().zip(expected) {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 2e-6, "got {got:?}, want {want:?}");
            }
        }
    }

    #[test]
    fn learning_rate_scales_the_step_only() {
        let device = Device::flex();
        let optimizer = Adadelta::default();
        let w = Tensor::<1>::from_floats([0.0], &device);
        let g = Tensor::<1>::from_floats([0.5], &device);
        let (full, _) = optimizer.step(1.0, w.clone(), g.clone(), None);
        let (half, state) = optimizer.step(0.5, w, g, None);
        let full_step = -full.into_scalar::<f32>();
        let half_step = -half.into_scalar::<f32>();
        assert!((full_step - 2.0 * half_step).abs() <= f32::EPSILON * full_step);
        // The running average holds the unscaled step, as in Keras.
        let square_delta = state.unwrap().square_delta.into_scalar::<f32>();
        let expected = 0.05 * full_step * full_step;
        assert!((square_delta - expected).abs() <= 1e-5 * expected);
    }
}
