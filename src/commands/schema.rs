use crate::error::Result;
use crate::manifest::schema;

pub fn run() -> Result<()> {
    print!("{}", schema_text());
    Ok(())
}

/// The schema exactly as `schemas/export.schema.json` holds it.
pub fn schema_text() -> String {
    serde_json::to_string_pretty(&schema::json_schema()).expect("the schema serialises") + "\n"
}
