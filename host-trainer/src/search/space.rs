//! Search spaces: which fields of a base architecture and which training options a search
//! varies, how their values are drawn, and how a drawn setting becomes an architecture and a
//! training configuration.
//!
//! A space file is TOML with an optional `base` (a preset name, or an architecture table as
//! `train --arch` reads it; default `tutorial-tuned`) and a `[params]` table. Each parameter
//! is a list of choices, a single value (a list of one), or one distribution:
//!
//! ```toml
//! base = "tutorial-tuned"
//!
//! [params]
//! conv1.filters = [16, 32, 64]
//! dense1.units = { randint = [50, 1000] }   # 50 to 999, as scipy.stats.randint(50, 1000)
//! lr = { loguniform = [1e-4, 1e-2] }        # uniform in log space over [1e-4, 1e-2)
//! val_split = { uniform = [0.1, 0.3] }      # uniform over [0.1, 0.3)
//! optimizer = ["adam", "sgd"]
//! ```
//!
//! Settings are drawn as scikit-learn's `ParameterSampler` draws them: when every parameter
//! is a list, distinct points of their grid (without replacement); otherwise each parameter
//! independently, in name order.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::model::ArchSpec;
use crate::train::TrainConfig;

/// The tutorial's space, the one `search` uses without `--space`; the same text as
/// `host-trainer/spaces/tutorial.toml`.
pub const TUTORIAL_TOML: &str = include_str!("../../spaces/tutorial.toml");

/// What the built-in space is called in messages.
const TUTORIAL_NAME: &str = "the default space (host-trainer/spaces/tutorial.toml)";

/// The preset a space without `base` overrides.
const DEFAULT_BASE: &str = "tutorial-tuned";

/// A fault in a search space, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    #[error("cannot read the search space {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid TOML: {message}")]
    Toml { path: String, message: String },
    #[error(
        "{path}: unknown top-level key '{key}'; a search space holds `base` (optional) and \
         `[params]`"
    )]
    UnknownKey { path: String, key: String },
    #[error("{path}: base: {reason}")]
    BadBase { path: String, reason: String },
    #[error("{path}: [params] is missing or empty; name at least one parameter to search")]
    NoParams { path: String },
    #[error("{path}: unknown parameter '{name}'; with this base the parameters are: {known}")]
    UnknownParameter {
        path: String,
        name: String,
        known: String,
    },
    #[error("{path}: {name}: {reason}")]
    BadParameter {
        path: String,
        name: String,
        reason: String,
    },
}

/// One value of a parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// `true` or `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A real number.
    Float(f64),
    /// A name, such as an optimizer's.
    Word(String),
}

impl Value {
    /// The value on a numeric axis: whole and real numbers as they are, nothing for names.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Bool(_) | Value::Word(_) => None,
        }
    }

    /// The value as bare text, names without quotes: for CSV fields and axis labels.
    pub fn plain(&self) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(x) => x.to_string(),
            Value::Word(w) => w.clone(),
        }
    }

    fn count(&self, name: &str) -> anyhow::Result<usize> {
        match self {
            Value::Int(i) => usize::try_from(*i).with_context(|| format!("{name}: {i} < 0")),
            other => anyhow::bail!("{name}: expected a whole number, found {other}"),
        }
    }

    fn real(&self, name: &str) -> anyhow::Result<f64> {
        self.as_number()
            .with_context(|| format!("{name}: expected a number, found {self}"))
    }

    fn flag(&self, name: &str) -> anyhow::Result<bool> {
        match self {
            Value::Bool(b) => Ok(*b),
            other => anyhow::bail!("{name}: expected true or false, found {other}"),
        }
    }

    /// A name read as one of the enums it stands for (pool, activation, optimizer, schedule).
    fn word<T: serde::de::DeserializeOwned>(&self, name: &str) -> anyhow::Result<T> {
        let Value::Word(word) = self else {
            anyhow::bail!("{name}: expected a name, found {self}");
        };
        serde_json::from_value(serde_json::Value::String(word.clone()))
            .with_context(|| format!("{name}: '{word}' is not a known value"))
    }
}

/// Python's `repr`, so that settings print as the tutorial printed them.
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Word(w) => write!(f, "'{w}'"),
        }
    }
}

/// One point of a space: a value for each parameter, in name order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Setting(pub BTreeMap<String, Value>);

/// As a Python dict, the way scikit-learn's examples print `params`.
impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "'{name}': {value}")?;
        }
        f.write_str("}")
    }
}

/// How the values of one parameter are drawn.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// One of these, each equally likely.
    Choice(Vec<Value>),
    /// A whole number in `[low, high)`, as `scipy.stats.randint(low, high)`.
    Randint { low: i64, high: i64 },
    /// A real number in `[low, high)`, uniformly.
    Uniform { low: f64, high: f64 },
    /// A real number in `[low, high)` whose logarithm is uniform.
    #[serde(rename = "loguniform")]
    LogUniform { low: f64, high: f64 },
}

impl Distribution {
    fn draw(&self, rng: &mut StdRng) -> Value {
        match self {
            Distribution::Choice(values) => values[rng.random_range(0..values.len())].clone(),
            Distribution::Randint { low, high } => Value::Int(rng.random_range(*low..*high)),
            Distribution::Uniform { low, high } => Value::Float(rng.random_range(*low..*high)),
            Distribution::LogUniform { low, high } => {
                let x = rng.random_range(low.ln()..high.ln()).exp();
                // exp(ln(x)) can land a rounding step outside the bounds.
                Value::Float(x.max(*low).min(high.next_down()))
            }
        }
    }
}

/// What values a parameter takes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Whole numbers of at least `min`.
    Count { min: i64 },
    /// Real numbers above `min` (or equal to it when `min_included`) and below `max`.
    Real {
        min: f64,
        min_included: bool,
        max: Option<f64>,
    },
    /// One of these names.
    Word(&'static [&'static str]),
    /// `true` or `false`.
    Flag,
}

const ACTIVATIONS: &[&str] = &["relu", "none"];

/// Fields of each convolution block, as `convN.<field>` (N from 1).
const CONV_FIELDS: [(&str, Kind); 5] = [
    ("filters", Kind::Count { min: 1 }),
    ("kernel", Kind::Count { min: 1 }),
    ("activation", Kind::Word(ACTIVATIONS)),
    ("pool", Kind::Word(&["max", "avg", "none"])),
    ("pool_size", Kind::Count { min: 1 }),
];

/// Fields of each hidden dense layer, as `denseN.<field>` (N from 1).
const DENSE_FIELDS: [(&str, Kind); 2] = [
    ("units", Kind::Count { min: 1 }),
    ("activation", Kind::Word(ACTIVATIONS)),
];

/// The training options a space may set; `epochs` and `seed` belong to the search itself.
const TRAINING_FIELDS: [(&str, Kind); 9] = [
    (
        "lr",
        Kind::Real {
            min: 0.0,
            min_included: false,
            max: None,
        },
    ),
    ("batch_size", Kind::Count { min: 1 }),
    ("optimizer", Kind::Word(&["adadelta", "adam", "sgd"])),
    (
        "weight_decay",
        Kind::Real {
            min: 0.0,
            min_included: true,
            max: None,
        },
    ),
    ("schedule", Kind::Word(&["constant", "cosine", "plateau"])),
    ("patience", Kind::Count { min: 0 }),
    (
        "val_split",
        Kind::Real {
            min: 0.0,
            min_included: false,
            max: Some(1.0),
        },
    ),
    ("augment", Kind::Flag),
    ("standardize", Kind::Flag),
];

/// `conv2.kernel` as ("conv", 2, "kernel"); a layer number must be written without zeros in
/// front and count from 1.
fn layer_field(name: &str) -> Option<(&str, usize, &str)> {
    let (layer, field) = name.split_once('.')?;
    let digits = layer.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let kind = &layer[..layer.len() - digits.len()];
    let number: usize = digits.parse().ok()?;
    (number >= 1 && digits == number.to_string()).then_some((kind, number, field))
}

fn kind_of(name: &str, base: &ArchSpec) -> Option<Kind> {
    let find = |fields: &[(&str, Kind)], wanted: &str| {
        fields
            .iter()
            .find(|(field, _)| *field == wanted)
            .map(|(_, kind)| *kind)
    };
    match layer_field(name) {
        Some(("conv", number, field)) if number <= base.conv.len() => find(&CONV_FIELDS, field),
        Some(("dense", number, field)) if number <= base.dense.len() => find(&DENSE_FIELDS, field),
        Some(_) => None,
        None => find(&TRAINING_FIELDS, name),
    }
}

/// Every parameter name a space over `base` may use.
pub fn parameter_names(base: &ArchSpec) -> Vec<String> {
    let mut names = Vec::new();
    for number in 1..=base.conv.len() {
        names.extend(CONV_FIELDS.iter().map(|(f, _)| format!("conv{number}.{f}")));
    }
    for number in 1..=base.dense.len() {
        names.extend(
            DENSE_FIELDS
                .iter()
                .map(|(f, _)| format!("dense{number}.{f}")),
        );
    }
    names.extend(TRAINING_FIELDS.iter().map(|(f, _)| f.to_string()));
    names
}

const DISTRIBUTIONS: [&str; 3] = ["randint", "uniform", "loguniform"];

/// Checks one value against what the parameter takes.
fn parse_value(kind: Kind, value: &toml::Value) -> Result<Value, String> {
    match (kind, value) {
        (Kind::Count { min }, toml::Value::Integer(i)) if *i >= min => Ok(Value::Int(*i)),
        (Kind::Count { min }, toml::Value::Integer(i)) => {
            Err(format!("{i} is too small: the smallest allowed is {min}"))
        }
        (Kind::Count { .. }, other) => Err(format!("expected a whole number, found {other}")),
        (Kind::Real { .. }, toml::Value::Integer(i)) => {
            parse_value(kind, &toml::Value::Float(*i as f64))
        }
        (
            Kind::Real {
                min,
                min_included,
                max,
            },
            toml::Value::Float(x),
        ) => {
            let above_min = if min_included { *x >= min } else { *x > min };
            let below_max = max.is_none_or(|max| *x < max);
            if x.is_finite() && above_min && below_max {
                Ok(Value::Float(*x))
            } else {
                Err(format!("{x} is out of range: {}", range_text(kind)))
            }
        }
        (Kind::Real { .. }, other) => Err(format!("expected a number, found {other}")),
        (Kind::Word(words), toml::Value::String(s)) if words.contains(&s.as_str()) => {
            Ok(Value::Word(s.clone()))
        }
        (Kind::Word(words), other) => Err(format!(
            "{other} is not one of: {}",
            words
                .iter()
                .map(|w| format!("\"{w}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        (Kind::Flag, toml::Value::Boolean(b)) => Ok(Value::Bool(*b)),
        (Kind::Flag, other) => Err(format!("expected true or false, found {other}")),
    }
}

fn range_text(kind: Kind) -> String {
    match kind {
        Kind::Real {
            min,
            min_included,
            max,
        } => {
            let low = if min_included { ">=" } else { ">" };
            match max {
                Some(max) => format!("it must be {low} {min} and < {max}"),
                None => format!("it must be {low} {min}"),
            }
        }
        Kind::Count { min } => format!("it must be a whole number >= {min}"),
        Kind::Word(_) | Kind::Flag => String::new(),
    }
}

/// The `[low, high]` pair of a distribution.
fn bounds(distribution: &str, value: &toml::Value) -> Result<(toml::Value, toml::Value), String> {
    match value {
        toml::Value::Array(pair) if pair.len() == 2 => Ok((pair[0].clone(), pair[1].clone())),
        other => Err(format!(
            "{distribution} takes [low, high], two numbers; found {other}"
        )),
    }
}

fn parse_distribution(kind: Kind, value: &toml::Value) -> Result<Distribution, String> {
    let table = match value {
        toml::Value::Array(items) if items.is_empty() => {
            return Err("the list of choices is empty; give at least one value".into());
        }
        toml::Value::Array(items) => {
            let values: Result<Vec<Value>, String> =
                items.iter().map(|v| parse_value(kind, v)).collect();
            return values.map(Distribution::Choice);
        }
        toml::Value::Table(table) => table,
        scalar => return parse_value(kind, scalar).map(|v| Distribution::Choice(vec![v])),
    };
    let usage = "write a list of choices or one distribution: { randint = [low, high] }, \
                 { uniform = [low, high] } or { loguniform = [low, high] }";
    let mut entries = table.iter();
    let (Some((name, pair)), None) = (entries.next(), entries.next()) else {
        return Err(format!("{value} is not a distribution; {usage}"));
    };
    let (low, high) = bounds(name, pair)?;
    match (name.as_str(), kind) {
        ("randint", Kind::Count { .. }) => {
            let whole = |v: &toml::Value| match v {
                toml::Value::Integer(i) => Ok(*i),
                other => Err(format!(
                    "randint bounds must be whole numbers, found {other}"
                )),
            };
            let (low, high) = (whole(&low)?, whole(&high)?);
            if low >= high {
                return Err(format!(
                    "randint needs low < high, found [{low}, {high}] (it draws from low up to \
                     high - 1)"
                ));
            }
            parse_value(kind, &toml::Value::Integer(low)).map_err(|_| {
                format!(
                    "randint [{low}, {high}) can draw {low}: {}",
                    range_text(kind)
                )
            })?;
            Ok(Distribution::Randint { low, high })
        }
        (
            "uniform" | "loguniform",
            Kind::Real {
                min,
                min_included,
                max,
            },
        ) => {
            let real = |v: &toml::Value| match v {
                toml::Value::Integer(i) => Ok(*i as f64),
                toml::Value::Float(x) if x.is_finite() => Ok(*x),
                other => Err(format!(
                    "{name} bounds must be finite numbers, found {other}"
                )),
            };
            let (low, high) = (real(&low)?, real(&high)?);
            if low >= high {
                return Err(format!("{name} needs low < high, found [{low}, {high}]"));
            }
            if name == "loguniform" && low <= 0.0 {
                return Err(format!(
                    "loguniform needs positive bounds, found [{low}, {high}]"
                ));
            }
            // The draw covers [low, high): low itself must be allowed, and values just
            // below high.
            let low_ok = if min_included { low >= min } else { low > min };
            if !low_ok || max.is_some_and(|max| high > max) {
                return Err(format!(
                    "{name} [{low}, {high}) reaches outside the allowed values: {}",
                    range_text(kind)
                ));
            }
            Ok(if name == "uniform" {
                Distribution::Uniform { low, high }
            } else {
                Distribution::LogUniform { low, high }
            })
        }
        ("randint", _) => Err(format!(
            "randint draws whole numbers and this parameter does not take them; {usage}"
        )),
        ("uniform" | "loguniform", _) => Err(format!(
            "{name} draws real numbers and this parameter does not take them; use randint or \
             a list"
        )),
        (other, _) => Err(format!("unknown distribution '{other}'; {usage}")),
    }
}

/// Flattens `[params]` into (dotted name, value) pairs. A table whose name is not a
/// parameter is a group (`[params.conv1]` or the dotted keys `conv1.filters = ...`) unless
/// it looks like a distribution, which is then reported under its own name.
fn flatten<'a>(
    table: &'a toml::Table,
    prefix: &str,
    base: &ArchSpec,
    out: &mut Vec<(String, &'a toml::Value)>,
) {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let is_group = match value {
            toml::Value::Table(inner) => !inner.keys().any(|k| DISTRIBUTIONS.contains(&k.as_str())),
            _ => false,
        };
        match value {
            toml::Value::Table(inner) if is_group && kind_of(&name, base).is_none() => {
                flatten(inner, &name, base, out)
            }
            _ => out.push((name, value)),
        }
    }
}

/// A search space: the architecture the settings start from, and each parameter's
/// distribution, in name order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Space {
    /// The architecture whose fields the parameters override.
    pub base: ArchSpec,
    /// Each parameter's distribution.
    pub params: BTreeMap<String, Distribution>,
}

impl Space {
    /// The tutorial's space ([`TUTORIAL_TOML`]).
    pub fn tutorial() -> Result<Self, SpaceError> {
        Self::parse(TUTORIAL_TOML, TUTORIAL_NAME)
    }

    /// Reads a space file.
    pub fn from_file(path: &Path) -> Result<Self, SpaceError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpaceError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Reads a space from TOML text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, SpaceError> {
        let path = path.to_string();
        let table: toml::Table = toml::from_str(text).map_err(|e| SpaceError::Toml {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if let Some(key) = table
            .keys()
            .find(|k| !["base", "params"].contains(&k.as_str()))
        {
            return Err(SpaceError::UnknownKey {
                path,
                key: key.clone(),
            });
        }

        let bad_base = |reason: String| SpaceError::BadBase {
            path: path.clone(),
            reason,
        };
        let base = match table.get("base") {
            None => ArchSpec::preset(DEFAULT_BASE).map_err(|e| bad_base(format!("{e:#}")))?,
            Some(toml::Value::String(name)) => {
                ArchSpec::preset(name).map_err(|e| bad_base(format!("{e:#}")))?
            }
            Some(value @ toml::Value::Table(_)) => {
                let spec: ArchSpec = value
                    .clone()
                    .try_into()
                    .map_err(|e| bad_base(format!("not an architecture: {e}")))?;
                spec.validate().map_err(|e| bad_base(format!("{e:#}")))?;
                spec
            }
            Some(other) => {
                return Err(bad_base(format!(
                    "expected a preset name or an architecture table, found {other}"
                )));
            }
        };

        let entries = match table.get("params") {
            Some(toml::Value::Table(params)) if !params.is_empty() => {
                let mut entries = Vec::new();
                flatten(params, "", &base, &mut entries);
                entries
            }
            _ => return Err(SpaceError::NoParams { path }),
        };
        let mut params = BTreeMap::new();
        for (name, value) in entries {
            let Some(kind) = kind_of(&name, &base) else {
                return Err(SpaceError::UnknownParameter {
                    path,
                    name,
                    known: parameter_names(&base).join(", "),
                });
            };
            let distribution =
                parse_distribution(kind, value).map_err(|reason| SpaceError::BadParameter {
                    path: path.clone(),
                    name: name.clone(),
                    reason,
                })?;
            params.insert(name, distribution);
        }
        Ok(Self { base, params })
    }

    /// Whether every parameter is a list, which makes the space a grid of settings.
    pub fn is_grid(&self) -> bool {
        self.params
            .values()
            .all(|d| matches!(d, Distribution::Choice(_)))
    }

    /// How many settings a grid space holds; `None` when some parameter is a distribution,
    /// or when the count does not fit in a `usize`.
    pub fn grid_size(&self) -> Option<usize> {
        self.params.values().try_fold(1usize, |size, d| match d {
            Distribution::Choice(values) => size.checked_mul(values.len()),
            _ => None,
        })
    }

    /// Draws `count` settings with a seeded generator: distinct grid points when every
    /// parameter is a list (all of them, in random order, when the grid is smaller than
    /// `count`), otherwise `count` independent draws.
    pub fn sample(&self, count: usize, seed: u64) -> Vec<Setting> {
        let mut rng = StdRng::seed_from_u64(seed);
        if !self.is_grid() {
            return (0..count)
                .map(|_| {
                    Setting(
                        self.params
                            .iter()
                            .map(|(name, d)| (name.clone(), d.draw(&mut rng)))
                            .collect(),
                    )
                })
                .collect();
        }
        match self.grid_size() {
            Some(size) => rand::seq::index::sample(&mut rng, size, count.min(size))
                .into_iter()
                .map(|index| self.grid_point(index))
                .collect(),
            None => self.sample_large_grid(count, &mut rng),
        }
    }

    /// Point `index` of the grid, the last parameter (in name order) varying fastest, as
    /// scikit-learn's `ParameterGrid` numbers them.
    fn grid_point(&self, index: usize) -> Setting {
        let mut rest = index;
        let mut point = BTreeMap::new();
        for (name, distribution) in self.params.iter().rev() {
            if let Distribution::Choice(values) = distribution {
                point.insert(name.clone(), values[rest % values.len()].clone());
                rest /= values.len();
            }
        }
        Setting(point)
    }

    /// Distinct grid points of a grid too large to number: draw each list's index and
    /// redraw repeats (which are rare in such a grid).
    fn sample_large_grid(&self, count: usize, rng: &mut StdRng) -> Vec<Setting> {
        let mut seen = HashSet::new();
        let mut settings = Vec::with_capacity(count);
        while settings.len() < count {
            let setting = Setting(
                self.params
                    .iter()
                    .map(|(name, d)| (name.clone(), d.draw(rng)))
                    .collect(),
            );
            if seen.insert(setting.to_string()) {
                settings.push(setting);
            }
        }
        settings
    }

    /// The architecture and training settings of `setting`: the base with the setting's
    /// fields overridden, and `config` with its options overridden. An `optimizer` brings
    /// its own default learning rate, which an `lr` of the same setting then overrides (as
    /// `train --optimizer X --lr Y` does).
    pub fn apply(
        &self,
        setting: &Setting,
        config: &TrainConfig,
    ) -> anyhow::Result<(ArchSpec, TrainConfig)> {
        let mut spec = self.base.clone();
        let mut config = config.clone();
        if let Some(value) = setting.0.get("optimizer") {
            config.optimizer = value.word("optimizer")?;
            config.learning_rate = config.optimizer.default_learning_rate();
        }
        for (name, value) in &setting.0 {
            match layer_field(name) {
                Some(("conv", number, field)) if number <= spec.conv.len() => {
                    let block = &mut spec.conv[number - 1];
                    match field {
                        "filters" => block.filters = value.count(name)?,
                        "kernel" => block.kernel = value.count(name)?,
                        "activation" => block.activation = value.word(name)?,
                        "pool" => block.pool = value.word(name)?,
                        "pool_size" => block.pool_size = value.count(name)?,
                        _ => anyhow::bail!("unknown parameter '{name}'"),
                    }
                }
                Some(("dense", number, field)) if number <= spec.dense.len() => {
                    let layer = &mut spec.dense[number - 1];
                    match field {
                        "units" => layer.units = value.count(name)?,
                        "activation" => layer.activation = value.word(name)?,
                        _ => anyhow::bail!("unknown parameter '{name}'"),
                    }
                }
                Some(_) => anyhow::bail!("unknown parameter '{name}'"),
                None => match name.as_str() {
                    "lr" => config.learning_rate = value.real(name)?,
                    "batch_size" => config.batch_size = value.count(name)?,
                    "optimizer" => {}
                    "weight_decay" => config.weight_decay = value.real(name)?,
                    "schedule" => config.schedule = value.word(name)?,
                    "patience" => config.patience = value.count(name)?,
                    "val_split" => config.validation_split = value.real(name)?,
                    "augment" => config.augment = value.flag(name)?,
                    "standardize" => config.standardize = value.flag(name)?,
                    _ => anyhow::bail!("unknown parameter '{name}'"),
                },
            }
        }
        spec.validate()
            .with_context(|| format!("the setting {setting} is not a usable architecture"))?;
        Ok((spec, config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::model::Pool;
    use crate::train::OptimizerKind;

    fn parse(text: &str) -> Result<Space, SpaceError> {
        Space::parse(text, "space.toml")
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_tutorial_space_has_the_tutorials_parameters() {
        let space = Space::tutorial().unwrap();
        assert_eq!(space.base, ArchSpec::preset("tutorial-tuned").unwrap());
        let names: Vec<&str> = space.params.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "conv1.filters",
                "conv1.kernel",
                "conv1.pool_size",
                "conv2.filters",
                "conv2.kernel",
                "conv2.pool_size",
                "dense1.units"
            ]
        );
        assert_eq!(
            space.params["dense1.units"],
            Distribution::Randint {
                low: 50,
                high: 1000
            }
        );
        let ints = |v: &[i64]| Distribution::Choice(v.iter().map(|&i| Value::Int(i)).collect());
        assert_eq!(space.params["conv2.kernel"], ints(&[3, 6, 9]));
        assert_eq!(space.params["conv1.pool_size"], ints(&[2]));
        assert!(!space.is_grid(), "randint makes it a distribution space");
        assert_eq!(space.grid_size(), None);
    }

    #[test]
    fn dotted_quoted_and_grouped_names_are_the_same_parameter() {
        let dotted = parse("[params]\nconv1.filters = [8, 16]\n").unwrap();
        let quoted = parse("[params]\n\"conv1.filters\" = [8, 16]\n").unwrap();
        let grouped = parse("[params.conv1]\nfilters = [8, 16]\n").unwrap();
        assert_eq!(dotted, quoted);
        assert_eq!(dotted, grouped);
    }

    #[test]
    fn bases_are_presets_or_tables() {
        let space = parse("base = \"tutorial-2conv\"\n[params]\nconv2.filters = 8\n").unwrap();
        assert_eq!(space.base.dense.len(), 0);
        assert_eq!(
            space.params["conv2.filters"],
            Distribution::Choice(vec![Value::Int(8)])
        );
        let space = parse(
            "[[base.conv]]\nfilters = 4\nkernel = 3\npool = \"max\"\n\
             [params]\nconv1.pool = [\"max\", \"avg\"]\n",
        )
        .unwrap();
        assert_eq!(space.base.conv.len(), 1);
        assert!(error("base = \"resnet\"\n[params]\nlr = 1\n").contains("unknown preset"));
    }

    #[test]
    fn bad_spaces_name_the_file_and_the_field() {
        let cases = [
            (
                "[params]\nconv1.filter = [8]\n",
                "unknown parameter 'conv1.filter'",
            ),
            (
                "[params]\nconv3.filters = [8]\n",
                "unknown parameter 'conv3.filters'",
            ),
            (
                "[params]\ndense2.units = [8]\n",
                "unknown parameter 'dense2.units'",
            ),
            ("[params]\nepochs = [1, 2]\n", "unknown parameter 'epochs'"),
            (
                "[params]\nconv1.filters = []\n",
                "conv1.filters: the list of choices is empty",
            ),
            (
                "[params]\ndense1.units = { randint = [1000, 50] }\n",
                "dense1.units: randint needs low < high",
            ),
            (
                "[params]\ndense1.units = { randint = [5, 5] }\n",
                "dense1.units: randint needs low < high",
            ),
            (
                "[params]\nconv1.filters = { randint = [0, 8] }\n",
                "conv1.filters: randint [0, 8) can draw 0",
            ),
            (
                "[params]\nlr = { uniform = [0.1, 0.01] }\n",
                "lr: uniform needs low < high",
            ),
            (
                "[params]\nweight_decay = { loguniform = [0, 0.1] }\n",
                "weight_decay: loguniform needs positive bounds",
            ),
            (
                "[params]\nweight_decay = { loguniform = [-1, 0.1] }\n",
                "loguniform needs positive bounds",
            ),
            (
                "[params]\nlr = { uniform = [0, 0.1] }\n",
                "lr: uniform [0, 0.1) reaches outside",
            ),
            (
                "[params]\nval_split = [0.2, 1.5]\n",
                "val_split: 1.5 is out of range",
            ),
            (
                "[params]\nlr = { normal = [0, 1] }\n",
                "lr: unknown distribution 'normal'",
            ),
            (
                "[params]\nlr = { uniform = [0.1] }\n",
                "lr: uniform takes [low, high]",
            ),
            (
                "[params]\nconv1.filters = { uniform = [1, 8] }\n",
                "conv1.filters: uniform draws real numbers",
            ),
            (
                "[params]\nlr = { randint = [1, 8] }\n",
                "lr: randint draws whole numbers",
            ),
            (
                "[params]\nconv1.filters = [8, \"a\"]\n",
                "conv1.filters: expected a whole number",
            ),
            (
                "[params]\noptimizer = [\"adam\", \"rmsprop\"]\n",
                "optimizer: \"rmsprop\" is not one of",
            ),
            (
                "[params]\naugment = [1]\n",
                "augment: expected true or false",
            ),
            (
                "[params]\nconv1.filters = [0, 8]\n",
                "conv1.filters: 0 is too small",
            ),
            ("[params]\n", "[params] is missing or empty"),
            (
                "base = \"tutorial-tuned\"\n",
                "[params] is missing or empty",
            ),
            ("[parms]\nlr = [1]\n", "unknown top-level key 'parms'"),
            ("[params]\nlr = [1\n", "not valid TOML"),
        ];
        for (text, expected) in cases {
            let message = error(text);
            assert!(message.starts_with("space.toml: "), "{text}: {message}");
            assert!(
                message.contains(expected),
                "{text}:\n{message}\nlacks: {expected}"
            );
        }
        let unknown = error("[params]\nconv1.filter = [8]\n");
        assert!(unknown.contains("conv1.filters, conv1.kernel"), "{unknown}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = Space::from_file(Path::new("/nonexistent/space.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/space.toml"), "{err}");
    }

    #[test]
    fn settings_print_as_python_dicts() {
        let setting = Setting(BTreeMap::from([
            ("augment".to_string(), Value::Bool(true)),
            ("conv1.filters".to_string(), Value::Int(16)),
            ("lr".to_string(), Value::Float(0.001)),
            ("optimizer".to_string(), Value::Word("adam".into())),
        ]));
        assert_eq!(
            setting.to_string(),
            "{'augment': True, 'conv1.filters': 16, 'lr': 0.001, 'optimizer': 'adam'}"
        );
    }

    #[test]
    fn settings_override_the_base_and_the_config() {
        let space = parse(
            "[params]\nconv2.pool = [\"avg\"]\nconv2.kernel = [5]\ndense1.units = [60]\n\
             optimizer = [\"sgd\"]\nbatch_size = [16]\naugment = [true]\n\
             schedule = [\"plateau\"]\npatience = [0]\nval_split = [0.25]\n\
             weight_decay = [0.5]\nstandardize = [true]\nconv1.activation = [\"none\"]\n",
        )
        .unwrap();
        let setting = space.sample(1, 0).remove(0);
        let (spec, config) = space.apply(&setting, &TrainConfig::tutorial()).unwrap();
        assert_eq!(spec.conv[1].pool, Pool::Avg);
        assert_eq!(spec.conv[1].kernel, 5);
        assert_eq!(
            spec.conv[1].filters, 32,
            "fields not searched keep the base's value"
        );
        assert_eq!(spec.dense[0].units, 60);
        assert_eq!(config.optimizer, OptimizerKind::Sgd);
        assert_eq!(
            config.learning_rate,
            OptimizerKind::Sgd.default_learning_rate()
        );
        assert_eq!(config.batch_size, 16);
        assert!(config.augment && config.standardize);
        assert_eq!(config.patience, 0);
        assert_eq!(config.validation_split, 0.25);
        assert_eq!(config.weight_decay, 0.5);
        assert_eq!(config.epochs, TrainConfig::tutorial().epochs);

        let with_lr = parse("[params]\noptimizer = [\"adam\"]\nlr = [0.5]\n").unwrap();
        let setting = with_lr.sample(1, 0).remove(0);
        let (_, config) = with_lr.apply(&setting, &TrainConfig::tutorial()).unwrap();
        assert_eq!(config.learning_rate, 0.5, "an lr beside the optimizer wins");
    }

    #[test]
    fn a_setting_that_does_not_fit_is_refused_with_the_setting_named() {
        let space = parse("[params]\nconv2.pool_size = [32]\n").unwrap();
        let setting = space.sample(1, 0).remove(0);
        let err = format!(
            "{:#}",
            space.apply(&setting, &TrainConfig::tutorial()).unwrap_err()
        );
        assert!(
            err.contains("'conv2.pool_size': 32") && err.contains("pool_size 32"),
            "{err}"
        );
    }

    #[test]
    fn grids_smaller_than_the_count_are_searched_whole() {
        let space = parse("[params]\nconv1.filters = [8, 16]\nconv2.kernel = [3, 5, 7]\n").unwrap();
        assert!(space.is_grid());
        assert_eq!(space.grid_size(), Some(6));
        let settings = space.sample(50, 3);
        assert_eq!(settings.len(), 6);
        let distinct: HashSet<String> = settings.iter().map(Setting::to_string).collect();
        assert_eq!(distinct.len(), 6);
    }

    #[test]
    fn choices_are_drawn_evenly() {
        let space = Space::tutorial().unwrap();
        let settings = space.sample(3000, 11);
        for name in ["conv1.filters", "conv2.filters"] {
            for filters in [16, 32, 64] {
                let count = settings
                    .iter()
                    .filter(|s| s.0[name] == Value::Int(filters))
                    .count();
                // 1,000 expected; 4.6 standard deviations either side.
                assert!((900..=1100).contains(&count), "{name} {filters}: {count}");
            }
        }
    }

    #[test]
    fn large_grids_are_sampled_without_repeats() {
        let space = parse("[params]\nconv1.filters = [8, 16]\nconv2.kernel = [3, 5]\n").unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let settings = space.sample_large_grid(4, &mut rng);
        let distinct: HashSet<String> = settings.iter().map(Setting::to_string).collect();
        assert_eq!(distinct.len(), 4);
    }

    /// A space over every kind of distribution, with bounds from the strategy.
    fn mixed_space(low: i64, width: i64, real_low: f64, ratio: f64) -> Space {
        parse(&format!(
            "[params]\ndense1.units = {{ randint = [{low}, {high}] }}\n\
             lr = {{ loguniform = [{real_low:e}, {real_high:e}] }}\n\
             weight_decay = {{ uniform = [{real_low:e}, {real_high:e}] }}\n\
             optimizer = [\"adam\", \"sgd\"]\n",
            high = low + width,
            real_high = real_low * ratio,
        ))
        .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn draws_stay_in_their_ranges(
            low in 1i64..500,
            width in 1i64..500,
            real_low in 1e-6f64..1.0,
            ratio in 1.0001f64..1e4,
            seed in any::<u64>(),
        ) {
            let space = mixed_space(low, width, real_low, ratio);
            let Distribution::LogUniform { low: real_low, high: real_high } = space.params["lr"]
            else {
                panic!("lr is log-uniform");
            };
            for setting in space.sample(20, seed) {
                let units = setting.0["dense1.units"].as_number().unwrap();
                prop_assert!(units >= low as f64 && units < (low + width) as f64);
                for name in ["lr", "weight_decay"] {
                    let x = setting.0[name].as_number().unwrap();
                    prop_assert!(x >= real_low && x < real_high, "{name} {x}");
                }
                prop_assert!(matches!(&setting.0["optimizer"], Value::Word(w) if w == "adam" || w == "sgd"));
                space.apply(&setting, &TrainConfig::tutorial()).unwrap();
            }
        }

        #[test]
        fn the_same_seed_draws_the_same_settings(seed in any::<u64>(), count in 1usize..30) {
            let space = mixed_space(50, 950, 1e-4, 100.0);
            prop_assert_eq!(space.sample(count, seed), space.sample(count, seed));
            let grid = Space::tutorial().unwrap();
            prop_assert_eq!(grid.sample(count, seed), grid.sample(count, seed));
        }

        #[test]
        fn all_list_spaces_never_repeat_a_setting(
            sizes in proptest::collection::vec(1usize..5, 1..4),
            count in 1usize..80,
            seed in any::<u64>(),
        ) {
            let fields = ["conv1.filters", "conv2.filters", "dense1.units"];
            let text: String = sizes
                .iter()
                .zip(fields)
                .map(|(&n, name)| {
                    let values: Vec<String> = (1..=n).map(|v| (8 * v).to_string()).collect();
                    format!("{name} = [{}]\n", values.join(", "))
                })
                .collect();
            let space = parse(&format!("[params]\n{text}")).unwrap();
            let grid: usize = sizes.iter().product();
            let settings = space.sample(count, seed);
            prop_assert_eq!(settings.len(), count.min(grid));
            let distinct: HashSet<String> = settings.iter().map(Setting::to_string).collect();
            prop_assert_eq!(distinct.len(), settings.len());
        }
    }
}
