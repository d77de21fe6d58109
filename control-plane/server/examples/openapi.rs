//! Prints the OpenAPI document (`make openapi` writes it to `docs/openapi.json`).

fn main() {
    print!("{}", server::openapi::document());
}
