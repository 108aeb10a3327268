//! Tests on the shared models and photos (/work/shared, i.e. `../shared`
//! from the repository root).

#![allow(clippy::expect_used, reason = "test helpers fail the test by panicking, with the reason")]

use super::*;
use kit::imaging::ImageError;
use std::sync::OnceLock;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared").join(rel)
}

const V2: &str = "models/mobilenet_v2_1.0_224_quant.tflite";
const V1: &str = "models/mobilenet_v1_0.75_192_quant.tflite";
const LABELS: &str = "models/labels_mobilenet_quant_v1_224.txt";
const PHOTOS: [(&str, &str); 3] =
    [("hot_dog.jpg", "hotdog"), ("cat_720p.jpg", "Egyptian cat"), ("grace_hopper.jpg", "military uniform")];

fn config(model: &str) -> ClassifierConfig {
    ClassifierConfig::new(shared(model), shared(LABELS))
}

/// Loaded once per test binary: loading is the slow part.
fn v2() -> &'static Classifier {
    static V2_CLASSIFIER: OnceLock<Classifier> = OnceLock::new();
    V2_CLASSIFIER.get_or_init(|| Classifier::load(&config(V2)).expect("load v2"))
}

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(shared(&format!("images/{name}"))).expect("read photo")
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("classify-test-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("write temp file");
    path
}

fn print(model: &str, name: &str, predictions: &[Prediction]) {
    let top: Vec<String> =
        predictions.iter().map(|p| format!("{} {}/255 (p={:.4})", p.label, p.score, p.probability)).collect();
    println!("{model} {name}: {}", top.join(", "));
}

#[test]
fn v2_recognises_the_shared_photos() {
    let classifier = v2();
    println!("v2 loaded in {:?}, input {:?}", classifier.load_duration(), classifier.input_size());
    assert_eq!(classifier.input_size(), (224, 224));
    for (name, expected) in PHOTOS {
        let predictions = classifier.classify(&photo(name), &ImageLimits::default()).expect("classify");
        print("v2", name, &predictions);
        assert_eq!(predictions.len(), 5);
        assert_eq!(predictions[0].label, expected, "{name}");
        assert!(predictions.windows(2).all(|w| w[0].probability >= w[1].probability));
    }
}

#[test]
fn hot_dog_score_is_high_and_probabilities_sum_to_one() {
    let classifier = v2();
    let input = classifier.preprocess(&photo("hot_dog.jpg"), &ImageLimits::default()).expect("preprocess");
    assert_eq!(input.len(), 224 * 224 * 3);
    let probabilities = classifier.infer(&input).expect("infer");
    assert_eq!(probabilities.len(), 1001);
    let sum: f32 = probabilities.iter().sum();
    println!("sum of probabilities: {sum}");
    // LiteRT's are the quantized outputs, 1/256 steps rounded down or up
    // one by one: their sum strays from 1 (by 0.07 on grace_hopper with v1).
    assert!((sum - 1.0).abs() < 0.1, "sum {sum}");
    assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
    let best = &classifier.top_k(&probabilities)[0];
    println!("{}", best.sentence());
    assert_eq!((best.index, best.label.as_str()), (935, "hotdog"));
    assert!(best.score >= 200, "score {}", best.score);
}

#[test]
fn v1_on_the_shared_photos() {
    let classifier = Classifier::load(&config(V1)).expect("load v1");
    println!("v1 0.75 loaded in {:?}, input {:?}", classifier.load_duration(), classifier.input_size());
    assert_eq!(classifier.input_size(), (192, 192));
    for (name, _) in PHOTOS {
        let predictions = classifier.classify(&photo(name), &ImageLimits::default()).expect("classify");
        print("v1-0.75", name, &predictions);
        let sum: f32 = classifier
            .infer(&classifier.preprocess(&photo(name), &ImageLimits::default()).expect("preprocess"))
            .expect("infer")
            .iter()
            .sum();
        assert!((sum - 1.0).abs() < 0.1, "sum {sum}");
    }
    // The photo the original demo is about must still work on the small model.
    let hot_dog = classifier.classify(&photo("hot_dog.jpg"), &ImageLimits::default()).expect("classify");
    assert_eq!(hot_dog[0].label, "hotdog");
}

#[test]
fn the_float_model_has_no_quantized_tensor_left() {
    use tract_tflite::tflite::{root_as_model, TensorType};
    for model in [V2, V1] {
        let original = std::fs::read(shared(model)).expect("read model");
        let float = dequantize::dequantize_tflite(&original).expect("dequantize");
        let parsed = root_as_model(&float).expect("still a valid flatbuffer");
        let mut tensors = 0;
        for subgraph in parsed.subgraphs().expect("subgraphs") {
            for tensor in subgraph.tensors().expect("tensors") {
                tensors += 1;
                let quantized = tensor.quantization().and_then(|q| q.scale()).is_some_and(|s| !s.is_empty());
                assert!(!quantized, "{:?} still quantized", tensor.name());
                // Only the reshape's int32 shape operand is not a float.
                assert!(
                    tensor.type_() == TensorType::FLOAT32 || tensor.type_() == TensorType::INT32,
                    "{:?} is {:?}",
                    tensor.name(),
                    tensor.type_()
                );
            }
        }
        println!("{model}: {} -> {} bytes, {tensors} tensors", original.len(), float.len());
        // Roughly 4 bytes per weight instead of 1 are appended.
        assert!(float.len() > original.len() * 3);
    }
}

#[test]
fn missing_model_file() {
    let err = Classifier::load(&config("models/no-such-model.tflite")).expect_err("must fail");
    assert!(matches!(err, ClassifyError::ModelUnreadable { .. }), "{err}");
}

#[test]
fn a_file_that_is_not_a_model() {
    let path = temp_file("not-a-model.tflite", b"this is a text file, not a flatbuffer\n");
    let err = Classifier::load(&ClassifierConfig::new(&path, shared(LABELS))).expect_err("must fail");
    let _ = std::fs::remove_file(&path);
    assert!(matches!(err, ClassifyError::InvalidModel { .. }), "{err}");
    println!("{err}");
    // A photo is not a model either.
    let err =
        Classifier::load(&ClassifierConfig::new(shared("images/cat_720p.jpg"), shared(LABELS))).expect_err("must fail");
    assert!(matches!(err, ClassifyError::InvalidModel { .. }), "{err}");
}

#[test]
fn a_truncated_model_is_invalid() {
    let original = std::fs::read(shared(V1)).expect("read model");
    let path = temp_file("truncated.tflite", &original[..original.len() / 2]);
    let err = Classifier::load(&ClassifierConfig::new(&path, shared(LABELS))).expect_err("must fail");
    let _ = std::fs::remove_file(&path);
    assert!(matches!(err, ClassifyError::InvalidModel { .. }), "{err}");
}

#[test]
fn labels_with_the_wrong_count() {
    let path = temp_file("labels.txt", b"background\ntench\ngoldfish\n");
    let err = Classifier::load(&ClassifierConfig::new(shared(V1), &path)).expect_err("must fail");
    let _ = std::fs::remove_file(&path);
    match err {
        ClassifyError::LabelCountMismatch { labels, outputs, .. } => assert_eq!((labels, outputs), (3, 1001)),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn missing_labels_file() {
    let err =
        Classifier::load(&ClassifierConfig::new(shared(V1), shared("models/no-labels.txt"))).expect_err("must fail");
    assert!(matches!(err, ClassifyError::LabelsUnreadable { .. }), "{err}");
}

#[test]
fn a_body_that_is_not_an_image() {
    let classifier = v2();
    let err = classifier.classify(b"{\"hello\": \"world\"}", &ImageLimits::default()).expect_err("must fail");
    assert!(matches!(err, ClassifyError::Image(ImageError::UnsupportedFormat)), "{err}");
    let err = classifier.classify(b"", &ImageLimits::default()).expect_err("must fail");
    assert!(matches!(err, ClassifyError::Image(ImageError::Empty)), "{err}");
    let api: kit::ApiError = classifier.classify(b"GIF89a", &ImageLimits::default()).expect_err("fail").into();
    assert!(api.status.is_client_error(), "{api}");
}

#[test]
fn the_image_limits_apply() {
    let limits = ImageLimits { max_width: 100, max_height: 100, max_pixels: 10_000 };
    let err = v2().classify(&photo("cat_720p.jpg"), &limits).expect_err("must fail");
    assert!(matches!(err, ClassifyError::Image(ImageError::TooLarge { .. })), "{err}");
}

#[test]
fn wrong_input_length_is_an_inference_error() {
    let err = v2().infer(&[0; 10]).expect_err("must fail");
    assert!(matches!(err, ClassifyError::Inference(_)), "{err}");
}

#[test]
fn scores_are_the_quantized_outputs() {
    assert_eq!(score_of(0.0), 0);
    assert_eq!(score_of(1.0 / 256.0), 1);
    assert_eq!(score_of(0.5), 128);
    assert_eq!(score_of(0.995), 255);
    assert_eq!(score_of(1.0), 255);
    assert_eq!(score_of(f32::NAN), 0);
}

#[test]
fn top_k_orders_best_first() {
    let labels: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let best = top_k(&[0.1, 0.6, 0.1, 0.2], &labels, 3);
    let names: Vec<&str> = best.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(names, vec!["b", "d", "a"]);
    assert_eq!(best[0].score, 154);
    assert_eq!(top_k(&[0.5], &labels, 5).len(), 1);
}

#[test]
fn one_thread_per_inference() {
    let mut config = config(V1);
    config.threads = 2;
    let err = Classifier::load(&config).expect_err("refused");
    assert!(matches!(err, ClassifyError::BackendUnavailable { .. }), "{err}");
    assert!(err.to_string().contains("CLASSIFY_THREADS=1"), "{err}");
}
