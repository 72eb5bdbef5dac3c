//! The OpenAPI description, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

use crate::{admin, error, http, sse, streams, ws};

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The gateway's API.
#[derive(OpenApi)]
#[openapi(
    info(title = "busbar-gateway", description = "HTTP, SSE and WebSocket access to a busbar bus; every call runs as its token's principal through busbar's policy layer."),
    paths(
        http::healthz, http::readyz, http::publish, http::request, sse::subscribe, ws::upgrade,
        streams::list_streams, streams::add_stream, streams::stream_info, streams::delete_stream,
        streams::list_consumers, streams::consumer_info, streams::delete_consumer,
        admin::list_dead_letters, admin::redrive, admin::audit_verify, admin::stats,
    ),
    components(schemas(error::ApiError, http::Published, streams::NewStream)),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
