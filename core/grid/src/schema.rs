//! The JSON Schema (draft 2020-12) of a grid file, printed by `ablate grid schema`.
//!
//! The config part is rendered from the same description that validation uses (the private
//! `shape` module), so the schema and the checks agree. The schema cannot express everything
//! that validation checks (zip lengths, cross-field rules such as `cycle_start_sampling >=
//! cycle_length`): [`Grid::from_path`](crate::Grid::from_path) is the authority.

use serde_json::{json, Value};

use crate::shape;

/// The JSON Schema of a grid file. `$defs.cellConfig` is a resolved config (`config.json` of a
/// cell); `$defs.partialCellConfig` the same without required keys (a grid's `base`).
pub fn schema() -> Value {
    let config = shape::cell_config();
    let axis_name = json!({ "type": "string", "minLength": 1, "description": "An axis display name or path." });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.invalid/ablate/grid.schema.json",
        "title": "ablate grid file",
        "description": "A base cell config and axes over it; cells are the cross product of the axes (zipped groups count as one), minus excluded combinations.",
        "type": "object",
        "required": ["name", "base"],
        "additionalProperties": false,
        "properties": {
            "$schema": { "type": "string" },
            "name": { "type": "string", "minLength": 1, "description": "Name of the grid (default run folder name)." },
            "description": { "type": "string" },
            "base": {
                "$ref": "#/$defs/partialCellConfig",
                "description": "Config shared by all cells; axes override paths inside it."
            },
            "axes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["path", "values"],
                    "additionalProperties": false,
                    "properties": {
                        "path": {
                            "type": "string",
                            "pattern": "^[^.]+(\\.[^.]+)*$",
                            "description": "Dot-separated path into the cell config, e.g. \"temperature\", \"sampler.lr\", \"prior.params.scale\"."
                        },
                        "values": { "type": "array", "minItems": 1, "description": "Values the path takes, in order." },
                        "name": { "type": "string", "minLength": 1, "description": "Display name (default: the path)." },
                        "labels": {
                            "type": "array",
                            "items": { "type": "string" },
                            "description": "Display labels, one per value."
                        }
                    }
                }
            },
            "zip": {
                "type": "array",
                "description": "Groups of axes (by name or path) that vary together; equal lengths.",
                "items": { "type": "array", "minItems": 2, "items": axis_name }
            },
            "exclude": {
                "type": "array",
                "description": "Each entry drops the cells matching all of its axis: value pairs (a value may also be a label).",
                "items": { "type": "object", "minProperties": 1 }
            },
            "reference": {
                "type": "object",
                "minProperties": 1,
                "description": "The reference cells (axis: value pairs, matched like an exclude entry), e.g. {\"integrator\": \"hmc\", \"temperature\": 1}; the report compares every other cell's predictive with theirs. Every cell needs eval.store_predictions."
            }
        },
        "$defs": {
            "cellConfig": shape::to_schema(&config, true),
            "partialCellConfig": shape::to_schema(&config, false),
        }
    })
}
