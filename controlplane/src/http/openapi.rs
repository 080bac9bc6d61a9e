//! The API's OpenAPI 3.1 document, generated from the code: each handler's
//! `#[utoipa::path]` (method, path, parameters with the limits the handler
//! enforces, body, responses) and the `ToSchema` derives of the types it
//! reads and writes, which follow their serde attributes. Served at
//! `GET /api/v1/openapi.json` (a read: open on a loopback listener, like
//! every read).
//!
//! What every operation shares is added here rather than repeated on each:
//! the bearer scheme, the 401 and 500 answers, and for operations with a
//! body the 400 and 413 ones.
use std::{collections::BTreeSet, sync::LazyLock};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, ContentBuilder, RefOr, ResponseBuilder, Schema,
        schema::AdditionalProperties,
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};

use super::{
    AppState, auth, conntrack, error::ErrorBody, export, fib, firewall, firewall_history,
    firewall_rules, firewall_sets, health, interfaces, metrics, static_routes, stats,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// The name of the security scheme in the document.
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "xdpgate",
        description = "The xdpgate daemon's HTTP API: forwarding state, the firewall (candidate, \
                       commits, history), static routes, connection tracking, interfaces and flow export.\n\n\
                       Authentication: on a loopback listener reads need no token, and writes \
                       need none until the first API token exists (`xdpgate token create`); on \
                       any other listener every request needs `Authorization: Bearer <token>`. \
                       `/healthz` and `/readyz` are always open. A token that is shown is always \
                       checked.\n\nEvery error has the body `{\"error\": {\"code\", \"message\", \
                       \"details\"}}`.",
    ),
    paths(
        health::healthz,
        health::readyz,
        metrics::metrics,
        openapi_json,
        stats::stats,
        fib::routes,
        fib::neighbours,
        fib::links,
        firewall::active,
        firewall::candidate,
        firewall::put_candidate,
        firewall::commit,
        firewall::apply,
        firewall::commits,
        firewall::one_commit,
        firewall_history::pending,
        firewall_history::confirm,
        firewall_history::rollback,
        firewall_history::diff,
        firewall_sets::list,
        firewall_sets::one,
        firewall_sets::put,
        firewall_sets::delete,
        firewall_rules::list,
        firewall_rules::create,
        firewall_rules::one,
        firewall_rules::replace,
        firewall_rules::delete,
        static_routes::list,
        static_routes::add,
        static_routes::remove,
        conntrack::list,
        conntrack::flush,
        interfaces::list,
        interfaces::one,
        interfaces::attach,
        interfaces::detach,
        export::show,
        export::replace,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Shared),
    tags(
        (name = "health", description = "Probes and metrics"),
        (name = "meta", description = "This document"),
        (name = "forwarding", description = "What the XDP maps hold, and the counters"),
        (name = "firewall", description = "The active ruleset, the candidate, commits and history"),
        (name = "firewall-sets", description = "Address sets of the candidate"),
        (name = "firewall-rules", description = "Rules of the candidate"),
        (name = "static-routes", description = "Static routes, installed into the kernel"),
        (name = "conntrack", description = "The connection table"),
        (name = "interfaces", description = "Interfaces XDP runs on"),
        (name = "export", description = "IPFIX flow export and drop-log sampling"),
    )
)]
struct ApiDoc;

/// The document.
pub fn document() -> openapi::OpenApi {
    ApiDoc::openapi()
}

/// Serialised once: the document does not change while the daemon runs.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_json()
        .expect("the OpenAPI document serialises")
});

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses((
        status = 200,
        description = "The OpenAPI 3.1 document of this API",
        body = Object,
        content_type = "application/json",
    )),
)]
async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

/// What every operation shares.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("xg_<key id>_<secret>")
                    .description(Some(
                        "An API token (`xdpgate token create`). Optional for reads on a \
                         loopback listener, and for writes there until the first token exists.",
                    ))
                    .build(),
            ),
        );
        // The bearer token, or (on a loopback listener) none.
        doc.security = Some(vec![
            SecurityRequirement::new(BEARER, Vec::<String>::new()),
            SecurityRequirement::default(),
        ]);
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(openapi::Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let open = auth::OPEN_PATHS.contains(&path.as_str());
            for op in operations(item) {
                let responses = &mut op.responses.responses;
                if open {
                    op.security = Some(Vec::new());
                } else {
                    responses.entry("401".into()).or_insert_with(|| {
                        error("No token where one is needed, or a token that is not valid")
                    });
                }
                if op.request_body.is_some() {
                    responses
                        .entry("400".into())
                        .or_insert_with(|| error("The body is not JSON of the documented shape"));
                    responses
                        .entry("413".into())
                        .or_insert_with(|| error("The body is larger than this path's limit"));
                }
                responses
                    .entry("500".into())
                    .or_insert_with(|| error("An internal error; the message names the log entry"));
            }
        }
        relax_flattened(components);
    }
}

/// Every operation of a path item.
fn operations(item: &mut openapi::PathItem) -> impl Iterator<Item = &mut openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// A type with `#[serde(deny_unknown_fields)]` gets `additionalProperties:
/// false`; flattened into another (`RuleItem` is a `Rule` with its
/// `position`), it becomes an `allOf` item, where that would refuse the
/// other type's fields (JSON Schema's `unevaluatedProperties` would not,
/// but utoipa does not write it). Such types accept any properties in the
/// document; the handlers still refuse unknown fields with a 400.
fn relax_flattened(components: &mut openapi::Components) {
    let prefix = "#/components/schemas/";
    let flattened: BTreeSet<String> = components
        .schemas
        .values()
        .filter_map(|s| match s {
            RefOr::T(Schema::AllOf(all)) => Some(all.items.iter()),
            _ => None,
        })
        .flatten()
        .filter_map(|item| match item {
            RefOr::Ref(r) => r.ref_location.strip_prefix(prefix).map(str::to_owned),
            RefOr::T(_) => None,
        })
        .collect();
    for name in flattened {
        if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(&name)
            && matches!(
                o.additional_properties.as_deref(),
                Some(AdditionalProperties::FreeForm(false))
            )
        {
            o.additional_properties = None;
        }
    }
}

#[cfg(test)]
mod tests;
