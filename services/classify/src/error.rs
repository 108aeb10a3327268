//! What can go wrong loading the classifier or classifying an image.

use http::StatusCode;
use kit::imaging::ImageError;
use kit::ApiError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("cannot read the model file {path}: {source}")]
    ModelUnreadable { path: PathBuf, source: std::io::Error },
    #[error("the model file {path} is not a usable TensorFlow Lite image classifier: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    #[error("cannot read the labels file {path}: {source}")]
    LabelsUnreadable { path: PathBuf, source: std::io::Error },
    #[error("the labels file {path} has {labels} labels but the model outputs {outputs} classes")]
    LabelCountMismatch { path: PathBuf, labels: usize, outputs: usize },
    #[error("the {backend} inference backend is not available: {reason}")]
    BackendUnavailable { backend: &'static str, reason: String },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("inference failed: {0}")]
    Inference(String),
}

impl From<ClassifyError> for ApiError {
    fn from(e: ClassifyError) -> Self {
        match e {
            // The client's fault: keep the image intake's 4xx answers.
            ClassifyError::Image(image) => image.into(),
            ClassifyError::Inference(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "inference_failed",
                "the classifier failed on this image",
            ),
            // Load-time errors: the service is misconfigured. File paths
            // stay in the logs (Display), out of the answer.
            ClassifyError::ModelUnreadable { .. }
            | ClassifyError::InvalidModel { .. }
            | ClassifyError::LabelsUnreadable { .. }
            | ClassifyError::LabelCountMismatch { .. }
            | ClassifyError::BackendUnavailable { .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "model_unavailable",
                "the classification model is not available",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let api: ApiError = ClassifyError::Image(ImageError::UnsupportedFormat).into();
        assert_eq!(api.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let api: ApiError = ClassifyError::Image(ImageError::Empty).into();
        assert_eq!(api.status, StatusCode::BAD_REQUEST);
        let api: ApiError = ClassifyError::Inference("boom".into()).into();
        assert_eq!((api.status, api.code), (StatusCode::INTERNAL_SERVER_ERROR, "inference_failed"));
        let api: ApiError = ClassifyError::InvalidModel { path: "/secret/m".into(), reason: "x".into() }.into();
        assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!api.message.contains("/secret"));
    }
}
