//! Every loader on every layout, and every kind of bad input, through the public API.

mod fixtures;

use std::path::Path;

use host_trainer::data::{self, CLASS_NAMES, Wanted};

fn error_text(path: &Path, wanted: Wanted) -> String {
    match data::load(path, wanted) {
        Ok(_) => panic!("{} loaded, but it should not", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn binary_layout_unpacked_and_packed_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let batches = fixtures::write_binary_layout(dir.path());

    let from_root = data::load(dir.path(), Wanted::Both).unwrap();
    assert_eq!(from_root.train.len(), 50);
    assert_eq!(from_root.test.len(), 20);
    assert_eq!(from_root.train.labels[..3], [0, 1, 2]);
    assert!(from_root.train.image(0).iter().all(|&p| p == 10));
    assert!(from_root.train.image(49).iter().all(|&p| p == 59));
    assert_eq!(from_root.test.class_names[9], "truck");

    let from_batches = data::load(&batches, Wanted::Both).unwrap();
    assert_eq!(from_batches.train, from_root.train);

    for gzip in [true, false] {
        let archive = dir.path().join(if gzip { "c.tar.gz" } else { "c.tar" });
        fixtures::pack(&batches, "cifar-10-batches-bin", &archive, gzip);
        let packed = data::load(&archive, Wanted::Both).unwrap();
        assert_eq!(packed.train, from_root.train);
        assert_eq!(packed.test, from_root.test);
    }
}

#[test]
fn folder_layout_unpacked_and_packed_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("cifar");
    fixtures::write_folder_layout(&tree, 3);

    let unpacked = data::load(&tree, Wanted::Both).unwrap();
    assert_eq!(unpacked.train.len(), 30);
    assert_eq!(unpacked.test.len(), 10);
    assert_eq!(unpacked.train.class_counts(), [3; 10]);
    // The red plane of each training PNG holds its label; labels follow CIFAR-10's order.
    for i in 0..unpacked.train.len() {
        let label = unpacked.train.labels[i];
        assert!(unpacked.train.image(i)[..1024].iter().all(|&p| p == label));
        assert!(unpacked.train.image(i)[2048..].iter().all(|&p| p == 7));
    }

    // A folder holding the tree one level down is found too.
    assert_eq!(
        data::load(dir.path(), Wanted::Both).unwrap().train,
        unpacked.train
    );

    for gzip in [true, false] {
        let archive = dir.path().join(if gzip { "f.tar.gz" } else { "f.tar" });
        fixtures::pack(&tree, "cifar10", &archive, gzip);
        let packed = data::load(&archive, Wanted::Both).unwrap();
        assert_eq!(packed.train, unpacked.train);
        assert_eq!(packed.test, unpacked.test);
    }
}

#[test]
fn test_only_loads_need_no_training_set() {
    let dir = tempfile::tempdir().unwrap();
    let batches = fixtures::write_binary_layout(dir.path());
    for i in 1..=5 {
        std::fs::remove_file(batches.join(format!("data_batch_{i}.bin"))).unwrap();
    }
    let text = error_text(dir.path(), Wanted::Both);
    assert!(
        text.contains("no CIFAR-10 training set") && text.contains("none found"),
        "{text}"
    );
    assert_eq!(
        data::load(dir.path(), Wanted::TestOnly).unwrap().test.len(),
        20
    );
}

#[test]
fn truncated_batch_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let batches = fixtures::write_binary_layout(dir.path());
    let path = batches.join("data_batch_3.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(3073 * 4 + 10);
    std::fs::write(&path, bytes).unwrap();
    let text = error_text(dir.path(), Wanted::Both);
    assert!(text.contains("data_batch_3.bin"), "{text}");
    assert!(text.contains("offset 12292"), "{text}");

    let archive = dir.path().join("c.tar.gz");
    fixtures::pack(&batches, "cifar-10-batches-bin", &archive, true);
    let text = error_text(&archive, Wanted::Both);
    assert!(
        text.contains("c.tar.gz:cifar-10-batches-bin/data_batch_3.bin"),
        "{text}"
    );
}

#[test]
fn label_above_nine_names_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let batches = fixtures::write_binary_layout(dir.path());
    let path = batches.join("test_batch.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3073 * 5] = 12;
    std::fs::write(&path, bytes).unwrap();
    let text = error_text(dir.path(), Wanted::TestOnly);
    assert!(
        text.contains("test_batch.bin") && text.contains("record 5"),
        "{text}"
    );
    assert!(text.contains("label 12"), "{text}");
}

#[test]
fn image_of_the_wrong_size_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    fixtures::write_folder_layout(dir.path(), 1);
    let odd = fixtures::encoded(32, 31, [1, 2, 3], image::ImageFormat::Png);
    std::fs::write(dir.path().join("train/dog/odd.png"), odd).unwrap();
    let text = error_text(dir.path(), Wanted::Both);
    assert!(
        text.contains("train/dog/odd.png") && text.contains("32x31"),
        "{text}"
    );

    let archive = dir.path().with_extension("tar");
    fixtures::pack(dir.path(), "x", &archive, false);
    let text = error_text(&archive, Wanted::Both);
    assert!(text.contains("x/train/dog/odd.png"), "{text}");
}

#[test]
fn a_file_that_is_no_image_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    fixtures::write_folder_layout(dir.path(), 1);
    std::fs::write(dir.path().join("test/cat/broken.jpg"), b"not a jpeg").unwrap();
    let text = error_text(dir.path(), Wanted::TestOnly);
    assert!(
        text.contains("test/cat/broken.jpg") && text.contains("not a readable image"),
        "{text}"
    );
}

#[test]
fn unknown_empty_and_missing_class_folders_are_named() {
    let dir = tempfile::tempdir().unwrap();
    fixtures::write_folder_layout(dir.path(), 1);

    std::fs::create_dir(dir.path().join("train/unicorn")).unwrap();
    std::fs::copy(
        dir.path().join("train/cat/0000.png"),
        dir.path().join("train/unicorn/a.png"),
    )
    .unwrap();
    let text = error_text(dir.path(), Wanted::Both);
    assert!(text.contains("unknown class folder 'unicorn'"), "{text}");
    std::fs::remove_dir_all(dir.path().join("train/unicorn")).unwrap();

    std::fs::remove_file(dir.path().join("train/ship/0000.png")).unwrap();
    let text = error_text(dir.path(), Wanted::Both);
    assert!(
        text.contains("train/ship") && text.contains("holds no"),
        "{text}"
    );

    let archive = dir.path().with_extension("tar.gz");
    fixtures::pack(dir.path(), "c", &archive, true);
    let text = error_text(&archive, Wanted::Both);
    assert!(
        text.contains("'ship'") && text.contains("holds no"),
        "{text}"
    );

    std::fs::remove_dir(dir.path().join("train/ship")).unwrap();
    let text = error_text(dir.path(), Wanted::Both);
    assert!(text.contains("class folder 'ship' is missing"), "{text}");
}

#[test]
fn files_that_are_not_archives_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("notes.txt");
    std::fs::write(
        &text_file,
        "just some words, long enough to be more than a tar header? no",
    )
    .unwrap();
    let text = error_text(&text_file, Wanted::Both);
    assert!(
        text.contains("notes.txt") && text.contains("not a gzip or tar archive"),
        "{text}"
    );

    // A gzip stream cut short is reported as a damaged archive.
    let tree = dir.path().join("tree");
    fixtures::write_folder_layout(&tree, 2);
    let archive = dir.path().join("cut.tar.gz");
    fixtures::pack(&tree, "c", &archive, true);
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
    let text = error_text(&archive, Wanted::Both);
    assert!(
        text.contains("cut.tar.gz") && text.contains("damaged"),
        "{text}"
    );

    let text = error_text(&dir.path().join("absent"), Wanted::Both);
    assert!(text.contains("absent"), "{text}");

    let empty_dir = dir.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    let text = error_text(&empty_dir, Wanted::Both);
    assert!(text.contains("not a CIFAR-10 data set"), "{text}");
}

#[test]
fn shared_jpeg_archive_and_binary_test_batch_hold_the_same_test_set() {
    let jpeg = data::load(&fixtures::shared_data("cifar10-jpeg.tar.gz"), Wanted::Both).unwrap();
    assert_eq!(jpeg.train.len(), 50_000);
    assert_eq!(jpeg.test.len(), 10_000);
    assert_eq!(jpeg.train.class_counts(), [5_000; 10]);
    assert_eq!(jpeg.test.class_counts(), [1_000; 10]);
    assert_eq!(jpeg.train.class_names, CLASS_NAMES);

    let binary = data::load(
        &fixtures::shared_data("cifar-10-batches-bin"),
        Wanted::TestOnly,
    )
    .unwrap();
    assert_eq!(binary.test.len(), 10_000);
    assert_eq!(binary.test.class_counts(), [1_000; 10]);

    // The binary batch holds the same images, decoded by another JPEG decoder and shuffled.
    // Decoders may round a pixel differently, so compare per class the sorted lists of
    // image brightness (sum of all 3,072 values): each pair must agree to within an
    // average of a third of a level per value (measured: at most 669 of 1,024 allowed).
    for class in 0..10u8 {
        let sums = |set: &data::Dataset| {
            let mut sums: Vec<i64> = (0..set.len())
                .filter(|&i| set.labels[i] == class)
                .map(|i| set.image(i).iter().map(|&p| p as i64).sum())
                .collect();
            sums.sort_unstable();
            sums
        };
        let worst = sums(&jpeg.test)
            .iter()
            .zip(sums(&binary.test))
            .map(|(a, b)| (a - b).abs())
            .max()
            .unwrap();
        assert!(
            worst <= 1024,
            "class {class}: brightness differs by {worst}"
        );
    }
}
