//! The statuses every operation can answer whatever its handler does, added to the
//! OpenAPI document so that it lists every status a route can give (schemathesis checks it
//! in CI, `crates/conveyor/tests/fuzz.rs`).
//!
//! They come from the layers around the handlers, not from the handlers: the extractors (a
//! path or query parameter that does not parse: 400; a body too large, of another type, of
//! the wrong shape: 413, 415, 422), the middleware (a NUL in the URL: 400, in a body: 422),
//! the token gate (401 on guarded routes) and the store (503 with `Retry-After` when it is
//! out of reach). Writing them on each of forty `#[utoipa::path]`s would drift; here they
//! are added once, only where absent, so a handler's own description of a status wins.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// The name of the bearer scheme in the document.
const BEARER: &str = "bearer";

fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

fn operations(doc: &mut OpenApi) -> impl Iterator<Item = (&String, &mut Operation)> {
    doc.paths.paths.iter_mut().flat_map(|(path, item)| {
        [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ]
        .into_iter()
        .flatten()
        .map(move |operation| (path, operation))
    })
}

/// Adds the statuses of the layers to every operation of `doc`; with `guarded`, also 401
/// and the bearer requirement.
pub fn complete(doc: &mut OpenApi, guarded: bool) {
    for (path, operation) in operations(doc) {
        let responses = &mut operation.responses.responses;
        let mut add = |status: &str, description: &str| {
            responses
                .entry(status.to_owned())
                .or_insert_with(|| problem(description));
        };
        add(
            "400",
            "A parameter that does not parse, a malformed body, or a NUL character in the URL",
        );
        if operation.request_body.is_some() {
            add("413", "The body is larger than the server takes (2 MiB)");
            add("415", "The body is not `application/json`");
            add(
                "422",
                "The body has the wrong shape or holds a NUL character; the detail names the field",
            );
        }
        if path.starts_with("/api/") {
            add(
                "503",
                "The database is out of reach; nothing was done. Retry after `Retry-After` seconds",
            );
        }
        if guarded {
            add(
                "401",
                "No token, or not a valid one: send `Authorization: Bearer <CONVEYOR_API_TOKEN>`",
            );
            operation
                .security
                .get_or_insert_with(Vec::new)
                .push(SecurityRequirement::new(BEARER, Vec::<String>::new()));
        }
    }
    if guarded {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
