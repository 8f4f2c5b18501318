//! Typed heartbeat payloads: serialising a Rust value into JSON while refusing what serde_json
//! would hide.
//!
//! `serde_json::to_value(f64::NAN)` is `null`: a checkpoint written that way silently loses the
//! value. [`to_payload`] wraps serde_json's own value serializer in a checking one ([`checked`]),
//! which delegates every call (so the value built is exactly serde_json's) while tracking the JSON path of the
//! value being serialised, refusing non-finite `f32`/`f64` there, and refusing nesting deeper than
//! [`MAX_PAYLOAD_DEPTH`] before building it. The finished value then goes through
//! [`validate_payload`] for the size rule.

use std::cell::RefCell;

use serde::ser::{self, Serialize};
use serde_json::Value;

mod checked;

use super::payload::{
    HeartbeatPayloadError, MAX_PAYLOAD_DEPTH, PayloadInfo, Segment, push_key_segment,
    validate_payload,
};

/// Serialises `value` into a heartbeat payload, checking every rule of [`validate_payload`].
///
/// A non-finite number is reported with the JSON path it would have had in the payload (like
/// `$.items[3].ratio`); when several values are bad, the first one in serialisation order is
/// named. Any other serialisation error (a map key that is not a string, a `Serialize` impl that
/// fails) is reported as [`HeartbeatPayloadError::NotJson`] at the path where it happened.
pub fn to_payload<T: Serialize + ?Sized>(value: &T) -> Result<Value, HeartbeatPayloadError> {
    to_validated_payload(value).map(|(payload, _)| payload)
}

/// [`to_payload`], also returning what validation learned (size, warning threshold), so a
/// caller need not validate the payload a second time.
pub fn to_validated_payload<T: Serialize + ?Sized>(
    value: &T,
) -> Result<(Value, PayloadInfo), HeartbeatPayloadError> {
    let tracker = Tracker {
        state: RefCell::new(TrackerState {
            path: String::from("$"),
            failure: None,
        }),
    };
    match checked::to_value_checked(value, &tracker) {
        Ok(payload) => {
            let info = validate_payload(&payload)?;
            Ok((payload, info))
        }
        Err(error) => Err(tracker.state.into_inner().failure.unwrap_or_else(|| {
            HeartbeatPayloadError::NotJson {
                path: String::from("$"),
                reason: error.to_string(),
            }
        })),
    }
}

/// What the serialisation has learned so far: where it is, and the first failure.
#[derive(Debug)]
struct Tracker {
    state: RefCell<TrackerState>,
}

#[derive(Debug)]
struct TrackerState {
    /// The JSON path of the value being serialised.
    path: String,
    /// The first failure of the serialisation under way.
    failure: Option<HeartbeatPayloadError>,
}

impl Tracker {
    /// Runs `f` with the path extended by `variant` (when some) and `segment`, restoring it after,
    /// whatever `f` returns.
    fn within<R>(&self, variant: Option<&str>, segment: Segment<'_>, f: impl FnOnce() -> R) -> R {
        let len = {
            let path = &mut self.state.borrow_mut().path;
            let len = path.len();
            if let Some(variant) = variant {
                push_key_segment(path, variant);
            }
            segment.push_to(path);
            len
        };
        let result = f();
        self.state.borrow_mut().path.truncate(len);
        result
    }

    /// Records a failure at the current path unless an earlier one is recorded.
    fn fail(&self, make: impl FnOnce(String) -> HeartbeatPayloadError) {
        let mut state = self.state.borrow_mut();
        if state.failure.is_none() {
            let path = state.path.clone();
            state.failure = Some(make(path));
        }
    }

    /// Refuses a container at `depth` when its children would nest past the limit.
    fn enter<E: ser::Error>(&self, depth: usize, variant: Option<&str>) -> Result<(), E> {
        if depth < MAX_PAYLOAD_DEPTH {
            return Ok(());
        }
        let too_deep = |mut path: String| {
            if let Some(variant) = variant {
                push_key_segment(&mut path, variant);
            }
            HeartbeatPayloadError::TooDeep {
                path,
                limit: MAX_PAYLOAD_DEPTH,
            }
        };
        self.fail(too_deep);
        Err(E::custom(format!(
            "payload nests deeper than {MAX_PAYLOAD_DEPTH} levels"
        )))
    }

    fn check_finite<E: ser::Error>(&self, number: f64) -> Result<(), E> {
        if number.is_finite() {
            return Ok(());
        }
        let reason = format!("number is not finite ({number})");
        self.fail(|path| HeartbeatPayloadError::NotJson {
            path,
            reason: reason.clone(),
        });
        Err(E::custom(reason))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Serialize, Serializer};
    use serde_json::json;

    use super::*;

    #[derive(Serialize)]
    struct Item {
        name: String,
        ratio: f64,
    }

    #[derive(Serialize)]
    struct Report {
        label: &'static str,
        items: Vec<Item>,
    }

    fn item(ratio: f64) -> Item {
        Item {
            name: "x".to_owned(),
            ratio,
        }
    }

    fn not_json_path(result: Result<Value, HeartbeatPayloadError>) -> String {
        match result {
            Err(HeartbeatPayloadError::NotJson { path, .. }) => path,
            other => panic!("expected NotJson, got {other:?}"),
        }
    }

    #[test]
    fn nan_in_a_struct_inside_a_vec_is_named_by_its_path() {
        let report = Report {
            label: "r",
            items: vec![
                item(0.1),
                item(0.2),
                item(0.3),
                item(f64::NAN),
                item(f64::NAN),
            ],
        };
        let error = to_payload(&report).expect_err("NaN refused");
        assert_eq!(
            error,
            HeartbeatPayloadError::NotJson {
                path: "$.items[3].ratio".to_owned(),
                reason: "number is not finite (NaN)".to_owned(),
            }
        );
        assert_eq!(
            error.code(),
            crate::ErrorCode::HeartbeatPayloadNotJsonSerializable
        );
        // serde_json alone would have written null there.
        let lossy = serde_json::to_value(&report).expect("serde_json accepts NaN");
        assert_eq!(lossy["items"][3]["ratio"], Value::Null);
    }

    #[test]
    fn f32_infinities_are_refused() {
        assert_eq!(not_json_path(to_payload(&f32::INFINITY)), "$");
        assert_eq!(
            not_json_path(to_payload(&vec![1.0_f32, f32::NEG_INFINITY])),
            "$[1]"
        );
        assert_eq!(to_payload(&1.5_f32).expect("finite"), json!(1.5));
    }

    #[test]
    fn map_keys_that_are_not_identifiers_are_quoted() {
        let mut inner = BTreeMap::new();
        inner.insert("odd key", vec![0.0, f64::INFINITY]);
        let mut outer = BTreeMap::new();
        outer.insert("3d", inner);
        assert_eq!(
            not_json_path(to_payload(&outer)),
            r#"$["3d"]["odd key"][1]"#
        );

        let mut quoted = BTreeMap::new();
        quoted.insert("say \"hi\"", f64::NAN);
        assert_eq!(not_json_path(to_payload(&quoted)), r#"$["say \"hi\""]"#);

        let mut numbered = BTreeMap::new();
        numbered.insert(7_u32, f64::NAN);
        assert_eq!(not_json_path(to_payload(&numbered)), r#"$["7"]"#);
    }

    #[test]
    fn enum_variants_are_paths_as_serde_json_writes_them() {
        #[derive(Serialize)]
        enum Shape {
            Point(f64),
            Pair(f64, f64),
            Circle { radius: f64 },
        }
        assert_eq!(
            not_json_path(to_payload(&Shape::Point(f64::NAN))),
            "$.Point"
        );
        assert_eq!(
            not_json_path(to_payload(&Shape::Pair(1.0, f64::NAN))),
            "$.Pair[1]"
        );
        assert_eq!(
            not_json_path(to_payload(&Shape::Circle { radius: f64::NAN })),
            "$.Circle.radius"
        );
    }

    #[test]
    fn a_non_string_key_is_reported_at_its_map() {
        let mut map = BTreeMap::new();
        map.insert(vec![1], 2);
        match to_payload(&BTreeMap::from([("m", map)])) {
            Err(HeartbeatPayloadError::NotJson { path, reason }) => {
                assert_eq!(path, "$.m");
                assert!(reason.contains("key must be a string"), "{reason}");
            }
            other => panic!("expected NotJson, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_struct_round_trips_equal_to_serde_json() {
        #[derive(Serialize)]
        struct Checkpoint {
            step: u64,
            loss: f32,
            tags: BTreeMap<String, Option<i128>>,
            raw: (bool, char, ()),
            report: Report,
        }
        let value = Checkpoint {
            step: 7,
            loss: 0.25,
            tags: BTreeMap::from([("a b".to_owned(), Some(-3)), ("c".to_owned(), None)]),
            raw: (true, 'z', ()),
            report: Report {
                label: "r",
                items: vec![item(1e300), item(-0.0)],
            },
        };
        let expected = serde_json::to_value(&value).expect("serde_json");
        assert_eq!(to_payload(&value).expect("valid"), expected);
    }

    #[test]
    fn depth_and_size_are_checked_like_validate_payload() {
        let mut deep = json!(1);
        for _ in 0..129 {
            deep = json!([deep]);
        }
        assert_eq!(
            to_payload(&deep),
            Err(validate_payload(&deep).expect_err("too deep"))
        );
        let big = "x".repeat(1_000_000);
        assert!(matches!(
            to_payload(&big),
            Err(HeartbeatPayloadError::TooLarge {
                size_bytes: 1_000_002,
                ..
            })
        ));
    }

    #[test]
    fn raw_values_pass_through_as_serde_json_parses_them() {
        #[derive(Serialize)]
        struct WithRaw {
            raw: Box<serde_json::value::RawValue>,
            ratio: f64,
        }
        let raw =
            serde_json::value::RawValue::from_string(r#"{"b": [1, 2.5], "a": null}"#.to_owned())
                .expect("valid JSON");
        let value = WithRaw { raw, ratio: 0.5 };
        assert_eq!(
            to_payload(&value).expect("valid"),
            serde_json::to_value(&value).expect("serde_json")
        );
        let bad = WithRaw {
            ratio: f64::NAN,
            ..value
        };
        assert_eq!(not_json_path(to_payload(&bad)), "$.ratio");
    }

    #[test]
    fn a_swallowed_failure_is_forgotten() {
        /// Tries a NaN, ignores the refusal, writes 0 instead.
        struct Fallback;
        impl Serialize for Fallback {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq as _;
                let mut seq = serializer.serialize_seq(Some(1))?;
                if seq.serialize_element(&f64::NAN).is_err() {
                    seq.serialize_element(&0)?;
                }
                seq.end()
            }
        }
        assert_eq!(to_payload(&Fallback).expect("recovered"), json!([0]));
        let mixed = (Fallback, f64::NAN);
        assert_eq!(not_json_path(to_payload(&mixed)), "$[1]");
    }
}
