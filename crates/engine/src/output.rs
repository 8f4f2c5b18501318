//! A compute's output: the key columns removed, then validated against the output schema.

use jsonschema::Validator;
use serde_json::Value;
use stint_domain::TaskError;

use crate::EngineError;

/// The columns that identify a node; a compute may echo them, but they are not its output.
const KEY_COLUMNS: [&str; 3] = ["run_id", "node_id", "iteration"];

/// Removes the key columns from an object output; other values are returned unchanged.
pub(crate) fn strip_key_columns(mut output: Value) -> Value {
    if let Value::Object(map) = &mut output {
        for column in KEY_COLUMNS {
            map.remove(column);
        }
    }
    output
}

/// An output schema compiled once per node, or none.
#[derive(Debug)]
pub(crate) struct OutputValidator {
    validator: Option<Validator>,
}

impl OutputValidator {
    /// Compiles `schema`; an invalid schema is refused before any attempt starts.
    pub(crate) fn compile(schema: Option<&Value>) -> Result<Self, EngineError> {
        let validator = schema
            .map(jsonschema::validator_for)
            .transpose()
            .map_err(|error| EngineError::InvalidSchema(error.to_string()))?;
        Ok(Self { validator })
    }

    /// Checks `output`; `INVALID_OUTPUT` lists one JSON pointer and message per schema error.
    pub(crate) fn check(&self, output: &Value) -> Result<(), TaskError> {
        let Some(validator) = &self.validator else {
            return Ok(());
        };
        let errors: Vec<(String, String)> = validator
            .iter_errors(output)
            .map(|error| (error.instance_path().as_str().to_owned(), error.to_string()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TaskError::invalid_output(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_columns_are_removed_from_objects_only() {
        let out = strip_key_columns(json!({"run_id": "r", "node_id": "n", "iteration": 0, "x": 1}));
        assert_eq!(out, json!({"x": 1}));
        assert_eq!(strip_key_columns(json!([1])), json!([1]));
    }

    #[test]
    fn schema_errors_carry_pointers() {
        let schema =
            json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
        let validator = OutputValidator::compile(Some(&schema)).expect("valid schema");
        assert!(validator.check(&json!({"n": 3})).is_ok());
        let error = validator.check(&json!({"n": "x"})).expect_err("invalid");
        assert_eq!(error.details["errors"][0]["pointer"], "/n");
        assert!(OutputValidator::compile(Some(&json!({"type": 12}))).is_err());
    }
}
