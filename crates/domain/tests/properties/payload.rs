//! The heartbeat payload rules on random JSON values (shallow, deep past the limit, and large
//! around the size limits) and on typed Rust values with a non-finite number planted at a random
//! path.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Serialize;
use serde_json::{Map, Number, Value};
use stint_domain::HeartbeatPayloadError;
use stint_domain::heartbeat::{
    MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, WARN_PAYLOAD_BYTES, json_size, to_payload,
    validate_payload,
};

// ---- references, written independently of the rules under test ----

/// Nesting depth: 0 for a scalar, one more than the deepest child for an array or object.
fn reference_depth(value: &Value) -> usize {
    let children = match value {
        Value::Array(items) => items.iter().map(reference_depth).max(),
        Value::Object(map) => map.values().map(reference_depth).max(),
        _ => return 0,
    };
    1 + children.unwrap_or(0)
}

/// Size as compact UTF-8 JSON.
fn reference_size(value: &Value) -> u64 {
    serde_json::to_vec(value)
        .expect("a Value always serialises")
        .len() as u64
}

/// The path segment of an object key: `.key` for an identifier, `["key"]` otherwise.
fn key_segment(key: &str) -> String {
    let mut chars = key.chars();
    let identifier = chars
        .next()
        .is_some_and(|first| first == '_' || first.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
    if identifier {
        format!(".{key}")
    } else {
        format!(
            "[{}]",
            serde_json::to_string(key).expect("a string serialises")
        )
    }
}

/// The path of the first container (in document order) whose children would nest too deep.
fn first_too_deep(value: &Value, depth: usize, path: &str) -> Option<String> {
    let is_container = matches!(value, Value::Array(_) | Value::Object(_));
    if is_container && depth >= MAX_PAYLOAD_DEPTH {
        return Some(path.to_owned());
    }
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| first_too_deep(item, depth + 1, &format!("{path}[{index}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            first_too_deep(item, depth + 1, &format!("{path}{}", key_segment(key)))
        }),
        _ => None,
    }
}

// ---- random JSON values ----

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z_][a-z0-9_]{0,6}",
        1 => "[0-9][a-z0-9]{0,3}",
        1 => "[ -~]{0,5}",
        1 => "\\PC{0,4}",
        1 => Just(String::new()),
        1 => Just("odd key".to_owned()),
        1 => "[\\x00-\\x1f\"\\\\\x7f]{0,4}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        "[\\x00-\\x1f\"\\\\\x7fa\u{e9}\u{20ac}\u{1f600}]{0,8}"
    ]
}

fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        Just(-0.0),
        Just(f64::MAX)
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        finite_f64().prop_map(|f| Value::Number(Number::from_f64(f).expect("finite"))),
        text().prop_map(Value::String),
    ]
}

fn json_tree(depth: u32, size: u32) -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(depth, size, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// One step of a deep chain: an array or an object around the chain, with perhaps a sibling.
#[derive(Debug, Clone)]
struct Level {
    array: bool,
    key: String,
    sibling: Option<Value>,
    sibling_first: bool,
}

fn level() -> impl Strategy<Value = Level> {
    (
        any::<bool>(),
        key(),
        proptest::option::of(json_tree(2, 6)),
        any::<bool>(),
    )
        .prop_map(|(array, key, sibling, sibling_first)| Level {
            array,
            key,
            sibling,
            sibling_first,
        })
}

/// Values nested from a little under the depth limit to a little past it.
fn deep_json() -> impl Strategy<Value = Value> {
    let range = MAX_PAYLOAD_DEPTH - 8..MAX_PAYLOAD_DEPTH + 12;
    (proptest::collection::vec(level(), range), json_tree(3, 12)).prop_map(|(levels, bottom)| {
        levels.into_iter().rev().fold(bottom, |child, level| {
            if level.array {
                let mut items = vec![child];
                if let Some(sibling) = level.sibling {
                    let at = if level.sibling_first { 0 } else { 1 };
                    items.insert(at, sibling);
                }
                Value::Array(items)
            } else {
                let mut map = Map::new();
                if let Some(sibling) = level.sibling {
                    map.insert(format!("{}~", level.key), sibling);
                }
                map.insert(level.key, child);
                Value::Object(map)
            }
        })
    })
}

/// A size to aim at: a few bytes either side of the limit or of the warning threshold.
fn target_size() -> impl Strategy<Value = u64> {
    prop_oneof![
        MAX_PAYLOAD_BYTES - 40..=MAX_PAYLOAD_BYTES + 40,
        WARN_PAYLOAD_BYTES - 40..=WARN_PAYLOAD_BYTES + 40,
    ]
}

/// Values of a size close to `target_size`: a small value and a long string made of plain and
/// escaped characters, or an array of many small values.
fn large_json() -> impl Strategy<Value = Value> {
    let padded = (json_tree(3, 12), target_size(), text()).prop_map(|(small, target, tail)| {
        let base = serde_json::json!({ "data": small, "pad": tail });
        let missing = target.saturating_sub(reference_size(&base)) as usize;
        let pad = "x".repeat(missing) + &tail;
        serde_json::json!({ "data": small, "pad": pad })
    });
    let many = (json_tree(2, 6), target_size()).prop_map(|(element, target)| {
        // Each element adds its size and a comma; the brackets add 2.
        let each = reference_size(&element) + 1;
        let count = (target.saturating_sub(1) / each) as usize;
        Value::Array(vec![element; count.max(1)])
    });
    prop_oneof![3 => padded, 1 => many]
}

fn check_against_reference(value: &Value) -> Result<(), TestCaseError> {
    let depth = reference_depth(value);
    let size = reference_size(value);
    prop_assert_eq!(json_size(value), size);
    match validate_payload(value) {
        Ok(info) => {
            prop_assert!(depth <= MAX_PAYLOAD_DEPTH, "depth {} accepted", depth);
            prop_assert!(size <= MAX_PAYLOAD_BYTES, "size {} accepted", size);
            prop_assert_eq!(info.size_bytes, size);
            prop_assert_eq!(info.over_warning_threshold, size > WARN_PAYLOAD_BYTES);
            // Stored as text, read back with serde_json: an accepted payload always parses.
            let text = serde_json::to_string(value).expect("a Value serialises");
            let read_back: Value = serde_json::from_str(&text).map_err(|error| {
                TestCaseError::fail(format!("accepted at depth {depth}, unreadable: {error}"))
            })?;
            prop_assert_eq!(reference_depth(&read_back), depth);
        }
        Err(HeartbeatPayloadError::TooDeep { path, limit }) => {
            prop_assert!(depth > MAX_PAYLOAD_DEPTH, "depth {} refused", depth);
            prop_assert_eq!(limit, MAX_PAYLOAD_DEPTH);
            prop_assert_eq!(Some(path), first_too_deep(value, 0, "$"));
        }
        Err(HeartbeatPayloadError::TooLarge {
            size_bytes,
            limit_bytes,
        }) => {
            prop_assert!(depth <= MAX_PAYLOAD_DEPTH, "depth is checked first");
            prop_assert!(size > MAX_PAYLOAD_BYTES, "size {} refused", size);
            prop_assert_eq!(size_bytes, size);
            prop_assert_eq!(limit_bytes, MAX_PAYLOAD_BYTES);
        }
        Err(error @ HeartbeatPayloadError::NotJson { .. }) => {
            prop_assert!(false, "a Value holds only finite numbers, yet {}", error);
        }
        Err(error) => prop_assert!(false, "no rule but depth and size applies: {}", error),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Accepted exactly when depth <= 127 and size <= 1,000,000 bytes, with the right error; what
    /// is accepted is read back by serde_json.
    #[test]
    fn json_values_are_accepted_exactly_within_the_limits(
        value in prop_oneof![3 => json_tree(6, 48), 2 => deep_json()],
    ) {
        check_against_reference(&value)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn large_json_values_are_accepted_exactly_within_the_limits(value in large_json()) {
        check_against_reference(&value)?;
    }
}

// ---- typed payloads ----

/// A Rust payload with every shape serde gives serde_json: scalars, sequences, maps, structs
/// (with a renamed field), and the three externally tagged variant forms.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum Typed {
    Unit(()),
    Flag(bool),
    Int(i64),
    Float(f64),
    Single(f32),
    Text(String),
    List(Vec<Typed>),
    Map(BTreeMap<String, Typed>),
    Point(Point),
    Shape(Shape),
    Maybe(Option<Box<Typed>>),
}

#[derive(Debug, Clone, Serialize)]
struct Point {
    x: f64,
    #[serde(rename = "odd key")]
    y: f32,
}

#[derive(Debug, Clone, Serialize)]
enum Shape {
    Circle { radius: f64 },
    Pair(f64, Box<Typed>),
    Wrap(Box<Typed>),
}

fn finite_f32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("finite", |f| f.is_finite())
}

fn typed_leaf() -> impl Strategy<Value = Typed> {
    prop_oneof![
        Just(Typed::Unit(())),
        any::<bool>().prop_map(Typed::Flag),
        any::<i64>().prop_map(Typed::Int),
        finite_f64().prop_map(Typed::Float),
        finite_f32().prop_map(Typed::Single),
        text().prop_map(Typed::Text),
        (finite_f64(), finite_f32()).prop_map(|(x, y)| Typed::Point(Point { x, y })),
        finite_f64().prop_map(|radius| Typed::Shape(Shape::Circle { radius })),
    ]
}

fn typed_tree() -> impl Strategy<Value = Typed> {
    typed_leaf().prop_recursive(6, 40, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Typed::List),
            proptest::collection::btree_map(key(), inner.clone(), 0..5).prop_map(Typed::Map),
            (finite_f64(), inner.clone())
                .prop_map(|(first, second)| Typed::Shape(Shape::Pair(first, Box::new(second)))),
            inner
                .clone()
                .prop_map(|inner| Typed::Shape(Shape::Wrap(Box::new(inner)))),
            proptest::option::of(inner).prop_map(|inner| Typed::Maybe(inner.map(Box::new))),
        ]
    })
}

/// Typed values nested around the depth limit, every variant form among the levels.
fn deep_typed() -> impl Strategy<Value = Typed> {
    let range = MAX_PAYLOAD_DEPTH / 2 - 4..MAX_PAYLOAD_DEPTH + 8;
    (
        proptest::collection::vec((0..4_u8, key()), range),
        typed_tree(),
    )
        .prop_map(|(levels, bottom)| {
            levels
                .into_iter()
                .rev()
                .fold(bottom, |child, (form, key)| match form {
                    0 => Typed::List(vec![Typed::Int(1), child]),
                    1 => Typed::Map(BTreeMap::from([(key, child)])),
                    2 => Typed::Shape(Shape::Pair(0.5, Box::new(child))),
                    _ => Typed::Shape(Shape::Wrap(Box::new(child))),
                })
        })
}

/// The path of every float slot, in the order [`plant`] counts them.
fn slots(typed: &Typed, path: &str, out: &mut Vec<String>) {
    match typed {
        Typed::Float(_) | Typed::Single(_) => out.push(path.to_owned()),
        Typed::List(items) => {
            for (index, item) in items.iter().enumerate() {
                slots(item, &format!("{path}[{index}]"), out);
            }
        }
        Typed::Map(map) => {
            for (key, item) in map {
                slots(item, &format!("{path}{}", key_segment(key)), out);
            }
        }
        Typed::Point(_) => {
            out.push(format!("{path}.x"));
            out.push(format!("{path}[\"odd key\"]"));
        }
        Typed::Shape(Shape::Circle { .. }) => out.push(format!("{path}.Circle.radius")),
        Typed::Shape(Shape::Pair(_, second)) => {
            out.push(format!("{path}.Pair[0]"));
            slots(second, &format!("{path}.Pair[1]"), out);
        }
        Typed::Shape(Shape::Wrap(inner)) => slots(inner, &format!("{path}.Wrap"), out),
        Typed::Maybe(Some(inner)) => slots(inner, path, out),
        Typed::Unit(()) | Typed::Flag(_) | Typed::Int(_) | Typed::Text(_) | Typed::Maybe(None) => {}
    }
}

/// Puts `bad` in float slot number `slot`; returns whether it was reached.
fn plant(typed: &mut Typed, slot: &mut usize, bad: f64) -> bool {
    let mut here = |f: &mut dyn FnMut()| {
        if *slot == 0 {
            f();
            return true;
        }
        *slot -= 1;
        false
    };
    match typed {
        Typed::Float(x) => here(&mut || *x = bad),
        Typed::Single(x) => here(&mut || *x = bad as f32),
        Typed::List(items) => items.iter_mut().any(|item| plant(item, slot, bad)),
        Typed::Map(map) => map.values_mut().any(|item| plant(item, slot, bad)),
        Typed::Point(point) => here(&mut || point.x = bad) || here(&mut || point.y = bad as f32),
        Typed::Shape(Shape::Circle { radius }) => here(&mut || *radius = bad),
        Typed::Shape(Shape::Pair(first, second)) => {
            here(&mut || *first = bad) || plant(second, slot, bad)
        }
        Typed::Shape(Shape::Wrap(inner)) => plant(inner, slot, bad),
        Typed::Maybe(Some(inner)) => plant(inner, slot, bad),
        Typed::Unit(()) | Typed::Flag(_) | Typed::Int(_) | Typed::Text(_) | Typed::Maybe(None) => {
            false
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A finite typed payload gives exactly what serde_json gives, through the same rules.
    #[test]
    fn typed_payloads_match_serde_json_and_the_value_rules(
        typed in prop_oneof![3 => typed_tree(), 2 => deep_typed()],
    ) {
        let reference = serde_json::to_value(&typed).expect("finite values serialise");
        let expected = validate_payload(&reference).map(|_| reference);
        prop_assert_eq!(to_payload(&typed), expected);
    }

    /// One non-finite number planted anywhere is refused, at exactly its path.
    #[test]
    fn a_planted_non_finite_number_is_named_by_its_path(
        typed in typed_tree(),
        slot in any::<proptest::sample::Index>(),
        bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
    ) {
        let mut paths = Vec::new();
        slots(&typed, "$", &mut paths);
        prop_assume!(!paths.is_empty());
        let chosen = slot.index(paths.len());
        let mut planted = typed;
        prop_assert!(plant(&mut planted, &mut chosen.clone(), bad));
        match to_payload(&planted) {
            Err(HeartbeatPayloadError::NotJson { path, reason }) => {
                prop_assert_eq!(&path, &paths[chosen]);
                prop_assert!(reason.contains("not finite"), "{}", reason);
            }
            other => prop_assert!(false, "expected NotJson at {}, got {:?}", paths[chosen], other),
        }
    }
}
