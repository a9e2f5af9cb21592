//! `GetLatestRun`: the widget's request. Answers the latest public run as JSON (DESIGN §5).

use crate::app::App;
use crate::error::ApiError;
use crate::functions::{FunctionRequest, FunctionResponse};
use crate::store::StoreError;
use warp::http::Method;

/// Handles one widget request.
pub async fn handle(app: &App, request: &FunctionRequest) -> FunctionResponse {
    if request.method != Method::GET && request.method != Method::HEAD {
        return ApiError::MethodNotAllowed
            .to_response()
            .with_header("Allow", "GET, HEAD");
    }
    match app.store.load_credentials().await {
        Ok(None) => ApiError::NotConfigured.to_response(),
        Ok(Some(_)) => ApiError::StravaUnavailable.to_response(),
        Err(StoreError::Corrupt { .. }) => ApiError::NotConfigured.to_response(),
        Err(err) => {
            tracing::warn!(error = %err, "GetLatestRun cannot read storage");
            ApiError::StorageUnavailable.to_response()
        }
    }
}
