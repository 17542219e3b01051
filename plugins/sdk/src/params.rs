//! Plugin parameters: published descriptions and validated parsing of the JSON the host passes.

use serde_json::{Map, Value};

/// The type of a parameter value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// A float (JSON number).
    Float,
    /// An integer.
    Int,
    /// A boolean.
    Bool,
    /// A string, optionally from a list of choices.
    String,
    /// A list of strings (e.g. the roles a prior applies to).
    StringList,
}

impl ParamType {
    fn as_str(self) -> &'static str {
        match self {
            ParamType::Float => "float",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::String => "string",
            ParamType::StringList => "string-list",
        }
    }
}

/// Description of one parameter: what the host prints (`ablate plugins show`) and validates.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    /// The parameter name in grid files.
    pub name: &'static str,
    /// Its type.
    pub ty: ParamType,
    /// The default value.
    pub default: Value,
    /// Inclusive bounds for numbers.
    pub min: Option<f64>,
    /// Upper bound (numbers), if any.
    pub max: Option<f64>,
    /// Allowed values for strings and string lists (empty = any).
    pub choices: &'static [&'static str],
    /// One line for `ablate plugins show`.
    pub doc: &'static str,
}

impl ParamSpec {
    /// A float parameter with a default.
    pub fn float(name: &'static str, default: f64, doc: &'static str) -> Self {
        Self { name, ty: ParamType::Float, default: default.into(), min: None, max: None, choices: &[], doc }
    }
    /// An integer parameter with a default.
    pub fn int(name: &'static str, default: i64, doc: &'static str) -> Self {
        Self { name, ty: ParamType::Int, default: default.into(), min: None, max: None, choices: &[], doc }
    }
    /// A boolean parameter with a default.
    pub fn bool(name: &'static str, default: bool, doc: &'static str) -> Self {
        Self { name, ty: ParamType::Bool, default: default.into(), min: None, max: None, choices: &[], doc }
    }
    /// A string parameter; `choices` (may be empty) lists the allowed values.
    pub fn string(name: &'static str, default: &str, choices: &'static [&'static str], doc: &'static str) -> Self {
        Self { name, ty: ParamType::String, default: default.into(), min: None, max: None, choices, doc }
    }
    /// A list-of-strings parameter; `choices` (may be empty) lists the allowed values.
    pub fn strings(name: &'static str, default: &[&str], choices: &'static [&'static str], doc: &'static str) -> Self {
        let default = Value::Array(default.iter().map(|s| Value::from(*s)).collect());
        Self { name, ty: ParamType::StringList, default, min: None, max: None, choices, doc }
    }
    /// Inclusive range for a number.
    pub fn range(mut self, min: f64, max: f64) -> Self {
        self.min = Some(min);
        self.max = Some(max);
        self
    }
    /// Lower bound only.
    pub fn at_least(mut self, min: f64) -> Self {
        self.min = Some(min);
        self
    }

    /// The spec as published (`{"name","type","default","min","max","choices","doc"}`).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "type": self.ty.as_str(),
            "default": self.default,
            "min": self.min,
            "max": self.max,
            "choices": self.choices,
            "doc": self.doc,
        })
    }

    fn check(&self, v: &Value) -> Result<(), String> {
        let fail = |what: String| Err(format!("parameter `{}`: {what}", self.name));
        match self.ty {
            ParamType::Float | ParamType::Int => {
                let Some(x) = v.as_f64() else {
                    return fail(format!("expected a number, got {v}"));
                };
                if self.ty == ParamType::Int && (v.as_i64().is_none()) {
                    return fail(format!("expected an integer, got {v}"));
                }
                if !x.is_finite() {
                    return fail(format!("must be finite, got {x}"));
                }
                if let Some(min) = self.min.filter(|m| x < *m) {
                    return fail(format!("{x} is below the minimum {min}"));
                }
                if let Some(max) = self.max.filter(|m| x > *m) {
                    return fail(format!("{x} is above the maximum {max}"));
                }
            }
            ParamType::Bool if !v.is_boolean() => return fail(format!("expected true or false, got {v}")),
            ParamType::String => {
                let Some(s) = v.as_str() else {
                    return fail(format!("expected a string, got {v}"));
                };
                if !self.choices.is_empty() && !self.choices.contains(&s) {
                    return fail(format!("`{s}` is not one of {:?}", self.choices));
                }
            }
            ParamType::StringList => {
                let Some(items) = v.as_array() else {
                    return fail(format!("expected a list of strings, got {v}"));
                };
                for item in items {
                    match item.as_str() {
                        Some(s) if self.choices.is_empty() || self.choices.contains(&s) => {}
                        Some(s) => return fail(format!("`{s}` is not one of {:?}", self.choices)),
                        None => return fail(format!("expected strings, got {item}")),
                    }
                }
            }
            ParamType::Bool => {}
        }
        Ok(())
    }
}

/// Parameters after validation, with defaults filled in.
#[derive(Debug, Clone)]
pub struct Params {
    values: Map<String, Value>,
}

impl Params {
    /// Validate `json` (an object) against `specs`: unknown names, wrong types and out-of-range
    /// values are errors that name the parameter.
    pub fn parse(json: &str, specs: &[ParamSpec]) -> Result<Self, String> {
        let given: Value = if json.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(json).map_err(|e| format!("parameters are not valid JSON: {e}"))?
        };
        let Value::Object(given) = given else {
            return Err(format!("parameters must be a JSON object, got {given}"));
        };
        let mut problems = Vec::new();
        for name in given.keys() {
            if !specs.iter().any(|s| s.name == name) {
                let known: Vec<_> = specs.iter().map(|s| s.name).collect();
                let hint = did_you_mean(name, known.iter().copied()).map(|k| format!("; did you mean `{k}`?"));
                problems.push(format!("unknown parameter `{name}` (known: {known:?}){}", hint.unwrap_or_default()));
            }
        }
        let mut values = Map::new();
        for spec in specs {
            let v = given.get(spec.name).cloned().unwrap_or_else(|| spec.default.clone());
            match spec.check(&v) {
                Ok(()) => {
                    values.insert(spec.name.to_owned(), v);
                }
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(Self { values })
        } else {
            Err(problems.join("; "))
        }
    }

    fn get(&self, name: &str) -> &Value {
        self.values.get(name).unwrap_or_else(|| panic!("parameter `{name}` is not declared in the plugin's specs"))
    }
    /// A float parameter (validated; panics only for a name not in the specs, a plugin bug).
    pub fn f64(&self, name: &str) -> f64 {
        self.get(name).as_f64().unwrap_or(f64::NAN)
    }
    /// An integer parameter.
    pub fn i64(&self, name: &str) -> i64 {
        self.get(name).as_i64().unwrap_or_default()
    }
    /// A boolean parameter.
    pub fn bool(&self, name: &str) -> bool {
        self.get(name).as_bool().unwrap_or_default()
    }
    /// A string parameter.
    pub fn str(&self, name: &str) -> &str {
        self.get(name).as_str().unwrap_or_default()
    }
    /// A list-of-strings parameter.
    pub fn strings(&self, name: &str) -> Vec<String> {
        self.get(name)
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

/// JSON array of specs, as published in [`crate::abi::FactoryInfo::params_json`].
pub fn specs_json(specs: &[ParamSpec]) -> String {
    Value::Array(specs.iter().map(ParamSpec::to_json).collect()).to_string()
}

/// The known name closest to `given` when it is a near miss: within edit distance 2 (1 for
/// names of up to 4 characters). Used for "did you mean" hints on parameter and plugin names.
///
/// ```
/// use ablate_sdk::params::did_you_mean;
/// assert_eq!(did_you_mean("gausian", ["gaussian", "laplace"]), Some("gaussian"));
/// assert_eq!(did_you_mean("weibull", ["gaussian", "laplace"]), None);
/// ```
pub fn did_you_mean<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = if given.chars().count() <= 4 { 1 } else { 2 };
    ablate_suggest::closest(given, known, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_parameter_gets_a_suggestion() {
        let specs = vec![ParamSpec::float("scale", 1.0, "sd"), ParamSpec::float("df", 3.0, "degrees of freedom")];
        let e = Params::parse(r#"{"scael": 2.0}"#, &specs).unwrap_err();
        assert!(e.contains("unknown parameter `scael`") && e.contains("did you mean `scale`?"), "{e}");
        let e = Params::parse(r#"{"location": 2.0}"#, &specs).unwrap_err();
        assert!(!e.contains("did you mean"), "{e}");
        assert_eq!(did_you_mean("dg", ["df", "scale"]), Some("df"));
        assert_eq!(did_you_mean("xy", ["df", "scale"]), None);
    }
}
