//! Prints the OpenAPI 3.1 document `GET /openapi.json` serves, built natively from the route
//! table and the DTO schemas with no server: `make client` generates the TypeScript client's
//! types from it, and `make test` checks the committed client still matches it.

fn main() {
    let doc = tenantry::docs::document();
    let text = serde_json::to_string_pretty(&doc).expect("the OpenAPI document serialises");
    println!("{text}");
}
