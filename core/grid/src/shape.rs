//! The shape of a [`CellConfig`](crate::config::CellConfig) as data: which keys each object
//! has, their JSON types, and the documented ranges.
//!
//! One description serves three purposes, so they cannot drift apart:
//! - [`check`] walks a JSON value and reports *every* unknown key, wrong type, missing key and
//!   unknown enum string with its path (serde stops at the first and has no path);
//! - [`shape_at`] tells whether an axis path (`prior.params.scale`) leads anywhere;
//! - [`to_schema`] renders the JSON Schema used by [`crate::schema`].
//!
//! Ranges and cross-field rules are checked on the typed config
//! ([`CellConfig::validate`](crate::config::CellConfig::validate)); the ranges here only feed
//! the schema (a test keeps the two in step).

use serde_json::{json, Map, Value};

use crate::config::limits;
use crate::problem::{join_index, join_key, show, type_name, Problem};

/// The JSON shape of one config value.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    /// Anything (plugin parameters: checked later by the plugin host).
    Any,
    Bool,
    Str,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A non-negative integer, at least `min`, at most `max`.
    UInt {
        min: Option<u64>,
        max: Option<u64>,
    },
    /// A number with optional bounds (`min`, exclusive or not; `max_exclusive`; `max`).
    Float {
        min: Option<f64>,
        min_exclusive: bool,
        max_exclusive: Option<f64>,
        max: Option<f64>,
    },
    /// The inner shape or `null`.
    Nullable(Box<Shape>),
    /// Items of the inner shape, at most `max_items` of them.
    Array(Box<Shape>, Option<usize>),
    Object(Vec<Field>),
    /// An object whose `tag` key picks the set of other keys (serde's internally tagged enum).
    Tagged {
        tag: &'static str,
        variants: Vec<(&'static str, Vec<Field>)>,
    },
}

/// One key of an object.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub name: &'static str,
    pub shape: Shape,
    pub required: bool,
    pub doc: &'static str,
}

fn field(name: &'static str, shape: Shape, doc: &'static str) -> Field {
    Field { name, shape, required: false, doc }
}

fn required(name: &'static str, shape: Shape, doc: &'static str) -> Field {
    Field { name, shape, required: true, doc }
}

fn uint(min: u64, max: u64) -> Shape {
    Shape::UInt { min: Some(min), max: Some(max) }
}

/// Names of the activations, initialisations, schedules and preconditioners (serde names).
pub(crate) const ACTIVATIONS: &[&str] = &["relu", "tanh", "gelu"];
const INITS: &[&str] = &["glorot-uniform", "he-normal"];
const SUBSETS: &[&str] = &["random", "first"];
const SCHEDULES: &[&str] = &["cosine", "glide", "flat"];
const PRECISIONS: &[&str] = &["fp32", "tf32", "bf16"];
const PRECONDITIONERS: &[&str] = &["layerwise", "identity"];

fn plugin_ref() -> Shape {
    Shape::Object(vec![
        required("name", Shape::Str, "Plugin name (as listed by `ablate plugins`)."),
        field("params", Shape::Any, "Plugin parameters, checked against the plugin's description."),
    ])
}

/// The shape of [`CellConfig`](crate::config::CellConfig). Keep in step with `config.rs`
/// (the tests deserialize what this accepts).
pub(crate) fn cell_config() -> Shape {
    Shape::Object(vec![
        field(
            "temperature",
            Shape::Float { min: Some(0.0), min_exclusive: false, max_exclusive: None, max: Some(limits::TEMPERATURE) },
            "Posterior temperature T >= 0 (0 = SGD with momentum).",
        ),
        field("seed", seed(), "Seed of everything random in the cell (any 64-bit integer)."),
        required("data", data_config(), "Which data and how much of it."),
        required("model", model_config(), "The network architecture."),
        field("sampler", sampler_config(), "The sampler protocol."),
        field("integrator", plugin_ref(), "Integrator plugin (default sym-euler)."),
        field("prior", plugin_ref(), "Prior plugin (default gaussian)."),
        field("likelihood", plugin_ref(), "Likelihood plugin (default categorical)."),
        field("noise", plugin_ref(), "Gradient-noise plugin (default minibatch)."),
        field("eval", eval_config(), "How the ensemble is evaluated."),
        field(
            "precision",
            Shape::Enum(PRECISIONS),
            "The network's arithmetic: fp32 (default), tf32 (CUDA products and convolutions; CUDA only) or bf16 (autocast of \
             forward and backward). Parameters, momenta, noise and prior stay fp32.",
        ),
    ])
}

/// Any 64-bit seed.
fn seed() -> Shape {
    Shape::UInt { min: None, max: None }
}

/// `data`: which dataset and how much of it.
fn data_config() -> Shape {
    Shape::Object(vec![
        required("dataset", Shape::Str, "digits, mnist, fashion-mnist, cifar10 or mnist1d (generated sequences)."),
        field("path", Shape::Nullable(Box::new(Shape::Str)), "Folder of the dataset files."),
        field(
            "train_size",
            Shape::Nullable(Box::new(uint(1, limits::EXAMPLES))),
            "Training examples used (at most the dataset's training split).",
        ),
        field(
            "test_size",
            Shape::Nullable(Box::new(uint(1, limits::EXAMPLES))),
            "Test examples used (at most the dataset's test split).",
        ),
        field("subset_seed", seed(), "Seed of the subset choice (any 64-bit integer)."),
        field("normalize", Shape::Bool, "Standardise each channel."),
        field("subset", Shape::Enum(SUBSETS), "random (seeded, default) or first (the first n of the file)."),
        field(
            "label_noise",
            Shape::Float { min: Some(0.0), min_exclusive: false, max_exclusive: None, max: Some(1.0) },
            "Fraction in [0, 1] of training labels redrawn uniformly over the classes (seeded by seed).",
        ),
    ])
}

/// `model`: the network, tagged by `kind`.
fn model_config() -> Shape {
    let activation = || field("activation", Shape::Enum(ACTIVATIONS), "Activation function.");
    Shape::Tagged {
                tag: "kind",
                variants: vec![
                    (
                        "mlp",
                        vec![
                            required(
                                "hidden",
                                Shape::Array(Box::new(uint(1, limits::WIDTH)), Some(limits::DEPTH)),
                                "Hidden widths (network: at most 2e8 parameters).",
                            ),
                            activation(),
                        ],
                    ),
                    (
                        "cnn",
                        vec![
                            required(
                                "channels",
                                Shape::Array(Box::new(uint(1, limits::CHANNELS)), Some(limits::CONV_LAYERS)),
                                "Channels of the 3x3 convolutions, each followed by 2x2 pooling (at most log2 of the image side).",
                            ),
                            activation(),
                        ],
                    ),
                    ("resnet20", vec![field("width", uint(1, limits::RESNET_WIDTH), "Width multiplier of the filters.")]),
                    (
                        "cnn-lstm",
                        vec![
                            field("filters", uint(1, limits::CHANNELS), "Filters of the 1-D convolution (default 16)."),
                            field("kernel", uint(1, limits::KERNEL), "Odd width of the 1-D convolution (default 5)."),
                            field("pool", uint(1, limits::POOL), "Max-pooling factor over time (default 2)."),
                            field("hidden", uint(1, limits::LSTM_HIDDEN), "LSTM units (default 32)."),
                        ],
                    ),
                ],
            }
}

/// `sampler`: the protocol (epochs, batch size, step size, cycles, preconditioner).
fn sampler_config() -> Shape {
    Shape::Object(vec![
        field("epochs", uint(1, limits::EPOCHS), "Total epochs (the protocol must collect 1 to 10000 members)."),
        field("batch_size", uint(1, limits::BATCH_SIZE), "Minibatch size (at most the training examples)."),
        field(
            "lr",
            Shape::Float { min: Some(0.0), min_exclusive: true, max_exclusive: None, max: Some(limits::LR) },
            "Learning rate (> 0).",
        ),
        field(
            "momentum_decay",
            Shape::Float { min: Some(0.0), min_exclusive: false, max_exclusive: Some(1.0), max: None },
            "Momentum decay in [0, 1).",
        ),
        field("cycle_length", uint(1, limits::EPOCHS), "Cycle length in epochs."),
        field(
            "cycle_start_sampling",
            Shape::UInt { min: None, max: Some(limits::EPOCHS) },
            "First epoch of the cyclical schedule (>= cycle_length).",
        ),
        field("schedule", Shape::Enum(SCHEDULES), "Cyclical time-step schedule."),
        field("preconditioner", Shape::Enum(PRECONDITIONERS), "Mass matrix."),
        field("precond_batches", uint(1, limits::PRECOND_BATCHES), "Minibatches for the preconditioner estimate."),
        field("temperature_ramp", Shape::Bool, "Ramp the temperature from 0."),
        field("init", Shape::Enum(INITS), "Weight initialisation."),
    ])
}

/// `eval`: how the ensemble is evaluated.
fn eval_config() -> Shape {
    Shape::Object(vec![
        field("ece_bins", uint(1, limits::ECE_BINS), "Bins of the expected calibration error."),
        field("batch_size", uint(1, limits::EVAL_BATCH_SIZE), "Batch size of test-set evaluation."),
        field(
            "prior_samples",
            uint(0, limits::PRIOR_SAMPLES),
            "Prior predictive check: prior draws whose predictions on training inputs are recorded (0 = off).",
        ),
        field(
            "store_predictions",
            Shape::Bool,
            "Save each member's test-set class probabilities (predictions.npy, float32) in the cell folder.",
        ),
        field(
            "ood",
            Shape::Nullable(Box::new(Shape::Str)),
            "Out-of-distribution test set (a dataset with the same image shape, e.g. fashion-mnist for mnist).",
        ),
    ])
}

/// A copy of `value` without what [`check`] reports (unknown keys, values of the wrong type or
/// unknown enum strings), so that range checks can still run on the rest of a broken config.
/// `None` when `value` itself does not fit.
pub(crate) fn prune(value: &Value, shape: &Shape) -> Option<Value> {
    let keep = |map: &Map<String, Value>, fields: &[Field], out: &mut Map<String, Value>| {
        for f in fields {
            if let Some(v) = map.get(f.name).and_then(|v| prune(v, &f.shape)) {
                out.insert(f.name.to_owned(), v);
            }
        }
    };
    match shape {
        Shape::Object(fields) => {
            let mut out = Map::new();
            keep(value.as_object()?, fields, &mut out);
            Some(Value::Object(out))
        }
        Shape::Tagged { tag, variants } => {
            let map = value.as_object()?;
            let name = map.get(*tag)?.as_str()?;
            let (_, fields) = variants.iter().find(|(n, _)| *n == name)?;
            let mut out = Map::new();
            out.insert((*tag).to_owned(), Value::from(name));
            keep(map, fields, &mut out);
            Some(Value::Object(out))
        }
        Shape::Nullable(_) if value.is_null() => Some(Value::Null),
        Shape::Nullable(inner) => prune(value, inner),
        Shape::Array(inner, _) => {
            value.as_array()?.iter().map(|v| prune(v, inner)).collect::<Option<Vec<_>>>().map(Value::Array)
        }
        _ => {
            let mut found = Vec::new();
            check(value, shape, "", false, &mut found);
            found.is_empty().then(|| value.clone())
        }
    }
}

/// Checks `value` against `shape`, pushing every problem (paths relative to `path`).
/// With `partial`, missing required keys are not problems (a grid's `base`).
pub(crate) fn check(value: &Value, shape: &Shape, path: &str, partial: bool, out: &mut Vec<Problem>) {
    match shape {
        Shape::Any => {}
        Shape::Bool => {
            if !value.is_boolean() {
                out.push(wrong_type(path, "true or false", value));
            }
        }
        Shape::Str => {
            if !value.is_string() {
                out.push(wrong_type(path, "a string", value));
            }
        }
        Shape::Enum(names) => match value.as_str() {
            Some(s) if names.contains(&s) => {}
            Some(s) => out.push(Problem::new(
                path,
                format!("unknown value {s:?}"),
                format!("use one of: {}{}", names.join(", "), suggest(s, names.iter().copied())),
            )),
            None => out.push(wrong_type(path, &format!("one of {}", names.join(", ")), value)),
        },
        Shape::UInt { .. } => {
            if !value.is_u64() {
                out.push(wrong_type(path, "a non-negative integer", value));
            }
        }
        Shape::Float { .. } => {
            if !value.is_number() {
                out.push(wrong_type(path, "a number", value));
            }
        }
        Shape::Nullable(inner) => {
            if !value.is_null() {
                check(value, inner, path, partial, out);
            }
        }
        Shape::Array(inner, _) => match value.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check(item, inner, &join_index(path, i), partial, out);
                }
            }
            None => out.push(wrong_type(path, "an array", value)),
        },
        Shape::Object(fields) => match value.as_object() {
            Some(map) => check_fields(map, fields, &[], path, partial, out),
            None => out.push(wrong_type(path, "an object", value)),
        },
        Shape::Tagged { tag, variants } => {
            let Some(map) = value.as_object() else {
                out.push(wrong_type(path, "an object", value));
                return;
            };
            let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
            let tag_path = join_key(path, tag);
            match map.get(*tag) {
                None => out.push(Problem::new(
                    tag_path,
                    format!("missing required key `{tag}`"),
                    format!("set `{tag}` to one of: {}", names.join(", ")),
                )),
                Some(Value::String(kind)) => match variants.iter().find(|(n, _)| n == kind) {
                    Some((_, fields)) => check_fields(map, fields, &[tag], path, partial, out),
                    None => out.push(Problem::new(
                        tag_path,
                        format!("unknown {tag} {kind:?}"),
                        format!("use one of: {}{}", names.join(", "), suggest(kind, names.iter().copied())),
                    )),
                },
                Some(other) => out.push(wrong_type(&tag_path, &format!("one of {}", names.join(", ")), other)),
            }
        }
    }
}

fn check_fields(
    map: &Map<String, Value>,
    fields: &[Field],
    extra_keys: &[&str],
    path: &str,
    partial: bool,
    out: &mut Vec<Problem>,
) {
    for (key, v) in map {
        match fields.iter().find(|f| f.name == key) {
            Some(f) => check(v, &f.shape, &join_key(path, key), partial, out),
            None if extra_keys.contains(&key.as_str()) => {}
            None => {
                let known = fields.iter().map(|f| f.name).chain(extra_keys.iter().copied());
                out.push(unknown_key(&join_key(path, key), key, known));
            }
        }
    }
    if !partial {
        for f in fields.iter().filter(|f| f.required && !map.contains_key(f.name)) {
            out.push(Problem::new(
                join_key(path, f.name),
                format!("missing required key `{}`", f.name),
                format!("set it in `base` or with an axis ({})", f.doc),
            ));
        }
    }
}

/// The shape at a dot-separated axis path, or the index of the first segment that leads
/// nowhere, with a hint. Below a tagged object the keys of all its variants are accepted.
pub(crate) fn shape_at<'a>(shape: &'a Shape, segments: &[&str]) -> Result<&'a Shape, (usize, String)> {
    static TAG: Shape = Shape::Str;
    let mut shape = shape;
    for (i, seg) in segments.iter().enumerate() {
        let fields: Vec<&Field> = match shape {
            Shape::Any => return Ok(shape),
            Shape::Nullable(inner) => {
                return shape_at(inner, &segments[i..]).map_err(|(j, h)| (i + j, h));
            }
            Shape::Object(fields) => fields.iter().collect(),
            Shape::Tagged { tag, variants } => {
                if seg == tag {
                    if i + 1 == segments.len() {
                        return Ok(&TAG);
                    }
                    return Err((i + 1, format!("`{tag}` is a string; it has no keys")));
                }
                variants.iter().flat_map(|(_, fs)| fs.iter()).collect()
            }
            _ => return Err((i, "the key before it holds a plain value, not an object".into())),
        };
        match fields.iter().find(|f| f.name == *seg) {
            Some(f) => shape = &f.shape,
            None => {
                let known = fields.iter().map(|f| f.name);
                let names: Vec<&str> = known.clone().collect();
                return Err((i, format!("known keys here: {}{}", names.join(", "), suggest(seg, known))));
            }
        }
    }
    Ok(shape)
}

/// Renders a shape as JSON Schema. `strict` keeps `required` lists (a resolved config);
/// without it only the tags of tagged objects are required (a partial `base`).
pub(crate) fn to_schema(shape: &Shape, strict: bool) -> Value {
    match shape {
        Shape::Any => json!({}),
        Shape::Bool => json!({ "type": "boolean" }),
        Shape::Str => json!({ "type": "string" }),
        Shape::Enum(names) => json!({ "enum": names }),
        Shape::UInt { min, max } => {
            let mut s = json!({ "type": "integer", "minimum": min.unwrap_or(0) });
            if let Some(m) = max {
                s["maximum"] = json!(m);
            }
            s
        }
        Shape::Float { min, min_exclusive, max_exclusive, max } => {
            let mut s = Map::new();
            s.insert("type".into(), json!("number"));
            if let Some(m) = min {
                let key = if *min_exclusive { "exclusiveMinimum" } else { "minimum" };
                s.insert(key.into(), json!(m));
            }
            if let Some(m) = max_exclusive {
                s.insert("exclusiveMaximum".into(), json!(m));
            }
            if let Some(m) = max {
                s.insert("maximum".into(), json!(m));
            }
            Value::Object(s)
        }
        Shape::Nullable(inner) => {
            json!({ "anyOf": [to_schema(inner, strict), { "type": "null" }] })
        }
        Shape::Array(inner, max_items) => {
            let mut s = json!({ "type": "array", "items": to_schema(inner, strict) });
            if let Some(m) = max_items {
                s["maxItems"] = json!(m);
            }
            s
        }
        Shape::Object(fields) => object_schema(fields, None, strict),
        Shape::Tagged { tag, variants } => {
            let one_of: Vec<Value> =
                variants.iter().map(|(name, fields)| object_schema(fields, Some((tag, name)), strict)).collect();
            json!({ "type": "object", "oneOf": one_of })
        }
    }
}

fn object_schema(fields: &[Field], tag: Option<(&str, &str)>, strict: bool) -> Value {
    let mut props = Map::new();
    let mut req = Vec::new();
    if let Some((tag, name)) = tag {
        props.insert(tag.into(), json!({ "const": name }));
        req.push(tag.to_owned());
    }
    for f in fields {
        let mut s = to_schema(&f.shape, strict);
        if let Value::Object(m) = &mut s {
            m.insert("description".into(), json!(f.doc));
        }
        props.insert(f.name.into(), s);
        if strict && f.required {
            req.push(f.name.to_owned());
        }
    }
    json!({
        "type": "object",
        "properties": props,
        "required": req,
        "additionalProperties": false,
    })
}

pub(crate) fn wrong_type(path: &str, expected: &str, got: &Value) -> Problem {
    Problem::new(path, format!("expected {expected}, got {} ({})", type_name(got), show(got)), "")
}

pub(crate) fn unknown_key<'a>(path: &str, key: &str, known: impl Iterator<Item = &'a str> + Clone) -> Problem {
    let names: Vec<&str> = known.clone().collect();
    Problem::new(
        path,
        format!("unknown key `{key}`"),
        format!("known keys here: {}{}", names.join(", "), suggest(key, known)),
    )
}

/// "; did you mean `x`?" when a known name is within edit distance 2 of `given`.
pub(crate) fn suggest<'a>(given: &str, known: impl Iterator<Item = &'a str>) -> String {
    ablate_suggest::closest(given, known, 2).map(|k| format!("; did you mean `{k}`?")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_within_two_edits() {
        assert_eq!(suggest("epoch", ["epochs", "lr"].into_iter()), "; did you mean `epochs`?");
        assert_eq!(suggest("tempreature", ["temperature", "seed"].into_iter()), "; did you mean `temperature`?");
        assert_eq!(suggest("lrate", ["lr", "seed"].into_iter()), "");
    }

    #[test]
    fn paths_into_the_config() {
        let s = cell_config();
        assert!(matches!(shape_at(&s, &["temperature"]), Ok(Shape::Float { .. })));
        assert!(matches!(shape_at(&s, &["prior", "params", "scale"]), Ok(Shape::Any)));
        assert!(matches!(shape_at(&s, &["model", "hidden"]), Ok(Shape::Array(..))));
        assert!(matches!(shape_at(&s, &["model", "kind"]), Ok(Shape::Str)));
        assert!(matches!(shape_at(&s, &["data", "train_size"]), Ok(Shape::Nullable(_))));
        assert_eq!(shape_at(&s, &["sampler", "lrr"]).unwrap_err().0, 1);
        assert_eq!(shape_at(&s, &["temperature", "x"]).unwrap_err().0, 1);
    }

    /// Every documented bound in the shape (which feeds the schema) is enforced by
    /// `CellConfig::validate` at the same path.
    #[test]
    fn schema_bounds_match_validate() {
        use crate::config::CellConfig;
        let valid = serde_json::json!({
            "data": { "dataset": "digits" },
            "model": { "kind": "mlp", "hidden": [8] },
        });
        let mut bounded = Vec::new();
        fn walk(shape: &Shape, path: Vec<&'static str>, out: &mut Vec<(Vec<&'static str>, Value)>) {
            match shape {
                Shape::Object(fields) => {
                    for f in fields {
                        let mut p = path.clone();
                        p.push(f.name);
                        walk(&f.shape, p, out);
                    }
                }
                Shape::Nullable(inner) => walk(inner, path, out),
                Shape::UInt { min, max } => {
                    if let Some(m) = min.filter(|m| *m > 0) {
                        out.push((path.clone(), serde_json::json!(m - 1)));
                    }
                    if let Some(m) = max {
                        out.push((path, serde_json::json!(m + 1)));
                    }
                }
                Shape::Float { min, min_exclusive, max_exclusive, max } => {
                    if let Some(m) = min {
                        out.push((path.clone(), serde_json::json!(if *min_exclusive { *m } else { m - 1.0 })));
                    }
                    if let Some(mx) = max_exclusive {
                        out.push((path.clone(), serde_json::json!(mx)));
                    }
                    if let Some(mx) = max {
                        out.push((path, serde_json::json!(mx * 2.0)));
                    }
                }
                _ => {}
            }
        }
        walk(&cell_config(), Vec::new(), &mut bounded);
        assert!(bounded.len() >= 24, "{bounded:?}");
        for (path, bad) in bounded {
            let mut v = valid.clone();
            let mut cur = &mut v;
            for seg in &path[..path.len() - 1] {
                cur = cur.as_object_mut().unwrap().entry(*seg).or_insert(serde_json::json!({}));
            }
            cur[path[path.len() - 1]] = bad.clone();
            let config: CellConfig = serde_json::from_value(v).unwrap();
            let dotted = path.join(".");
            assert!(
                config.validate().iter().any(|p| p.path == dotted),
                "{dotted} = {bad} is outside the schema's bounds but validate() accepts it"
            );
        }
    }
}
