//! Typed heartbeat payloads: serialising a Rust value into JSON while refusing what serde_json
//! would hide.
//!
//! `serde_json::to_value(f64::NAN)` is `null`: a checkpoint written that way silently loses the
//! value. [`to_payload`] wraps serde_json's own value serializer in [`Checked`], which delegates
//! every call (so the value built is exactly serde_json's) while tracking the JSON path of the
//! value being serialised, refusing non-finite `f32`/`f64` there, and refusing nesting deeper than
//! [`MAX_PAYLOAD_DEPTH`] before building it. The finished value then goes through
//! [`validate_payload`] for the size rule.

use std::cell::RefCell;

use serde::ser::{self, Serialize, SerializeMap as _, Serializer};
use serde_json::Value;

use super::{
    HeartbeatPayloadError, MAX_PAYLOAD_DEPTH, PayloadInfo, push_key_segment, validate_payload,
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
    let root = Child {
        value,
        tracker: &tracker,
        depth: 0,
    };
    match root.serialize(serde_json::value::Serializer) {
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

/// One step down the JSON path.
#[derive(Debug, Clone, Copy)]
enum Segment<'k> {
    Index(usize),
    Key(&'k str),
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
            match segment {
                Segment::Index(index) => path.push_str(&format!("[{index}]")),
                Segment::Key(key) => push_key_segment(path, key),
            }
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

/// A value to serialise through [`Checked`], `depth` containers below the payload's root.
struct Child<'t, T: ?Sized> {
    value: &'t T,
    tracker: &'t Tracker,
    depth: usize,
}

impl<T: Serialize + ?Sized> Serialize for Child<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let checked = Checked {
            inner: serializer,
            tracker: self.tracker,
            depth: self.depth,
        };
        let result = self.value.serialize(checked);
        match &result {
            // A failure below that a `Serialize` impl chose to swallow is no failure.
            Ok(_) => self.tracker.state.borrow_mut().failure = None,
            Err(error) => self.tracker.fail(|path| HeartbeatPayloadError::NotJson {
                path,
                reason: error.to_string(),
            }),
        }
        result
    }
}

/// The key of a map entry as serde_json writes it in an object (integers and booleans become
/// strings), by letting serde_json's own key serializer do it.
fn key_text<K: Serialize + ?Sized>(key: &K) -> Option<String> {
    let mut map = serde_json::value::Serializer.serialize_map(Some(1)).ok()?;
    map.serialize_entry(key, &()).ok()?;
    match map.end().ok()? {
        Value::Object(object) => object.into_iter().next().map(|(key, _)| key),
        _ => None,
    }
}

/// Names serde_json gives the structs it serialises specially (`RawValue`, arbitrary-precision
/// numbers): they are not objects in the payload.
fn is_serde_json_private(name: &str) -> bool {
    name.starts_with("$serde_json::private::")
}

/// A serializer that delegates to `inner`, tracking the path and refusing non-finite numbers and
/// excessive depth.
#[derive(Debug)]
struct Checked<'t, S> {
    inner: S,
    tracker: &'t Tracker,
    /// Containers above the value being serialised.
    depth: usize,
}

impl<'t, S> Checked<'t, S> {
    fn compound<C>(
        tracker: &'t Tracker,
        inner: C,
        variant: Option<&'static str>,
        child_depth: usize,
    ) -> Compound<'t, C> {
        Compound {
            inner,
            tracker,
            variant,
            child_depth,
            index: 0,
            key: None,
        }
    }
}

macro_rules! delegate {
    ($($method:ident($ty:ty);)*) => {
        $(fn $method(self, value: $ty) -> Result<S::Ok, S::Error> {
            self.inner.$method(value)
        })*
    };
}

impl<'t, S: Serializer> Serializer for Checked<'t, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<'t, S::SerializeSeq>;
    type SerializeTuple = Compound<'t, S::SerializeTuple>;
    type SerializeTupleStruct = Compound<'t, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<'t, S::SerializeTupleVariant>;
    type SerializeMap = Compound<'t, S::SerializeMap>;
    type SerializeStruct = Compound<'t, S::SerializeStruct>;
    type SerializeStructVariant = Compound<'t, S::SerializeStructVariant>;

    delegate! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_u128(u128);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_unit_struct(&'static str);
    }

    fn serialize_f32(self, value: f32) -> Result<S::Ok, S::Error> {
        self.tracker.check_finite(f64::from(value))?;
        self.inner.serialize_f32(value)
    }

    fn serialize_f64(self, value: f64) -> Result<S::Ok, S::Error> {
        self.tracker.check_finite(value)?;
        self.inner.serialize_f64(value)
    }

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        let child = Child {
            value,
            tracker: self.tracker,
            depth: self.depth,
        };
        self.inner.serialize_some(&child)
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let child = Child {
            value,
            tracker: self.tracker,
            depth: self.depth,
        };
        self.inner.serialize_newtype_struct(name, &child)
    }

    /// serde_json writes `{"variant": value}`: one object.
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.tracker.enter(self.depth, None)?;
        let child = Child {
            value,
            tracker: self.tracker,
            depth: self.depth + 1,
        };
        let inner = self.inner;
        self.tracker.within(None, Segment::Key(variant), || {
            inner.serialize_newtype_variant(name, index, variant, &child)
        })
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.tracker.enter(self.depth, None)?;
        let inner = self.inner.serialize_seq(len)?;
        Ok(Self::compound(self.tracker, inner, None, self.depth + 1))
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.tracker.enter(self.depth, None)?;
        let inner = self.inner.serialize_tuple(len)?;
        Ok(Self::compound(self.tracker, inner, None, self.depth + 1))
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.tracker.enter(self.depth, None)?;
        let inner = self.inner.serialize_tuple_struct(name, len)?;
        Ok(Self::compound(self.tracker, inner, None, self.depth + 1))
    }

    /// serde_json writes `{"variant": [...]}`: an object holding an array.
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.tracker.enter(self.depth, None)?;
        self.tracker.enter(self.depth + 1, Some(variant))?;
        let inner = self
            .inner
            .serialize_tuple_variant(name, index, variant, len)?;
        Ok(Self::compound(
            self.tracker,
            inner,
            Some(variant),
            self.depth + 2,
        ))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.tracker.enter(self.depth, None)?;
        let inner = self.inner.serialize_map(len)?;
        Ok(Self::compound(self.tracker, inner, None, self.depth + 1))
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        let child_depth = if is_serde_json_private(name) {
            self.depth
        } else {
            self.tracker.enter(self.depth, None)?;
            self.depth + 1
        };
        let inner = self.inner.serialize_struct(name, len)?;
        Ok(Self::compound(self.tracker, inner, None, child_depth))
    }

    /// serde_json writes `{"variant": {...}}`: an object holding an object.
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.tracker.enter(self.depth, None)?;
        self.tracker.enter(self.depth + 1, Some(variant))?;
        let inner = self
            .inner
            .serialize_struct_variant(name, index, variant, len)?;
        Ok(Self::compound(
            self.tracker,
            inner,
            Some(variant),
            self.depth + 2,
        ))
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A container being serialised: delegates to serde_json's, each child under its path segment.
#[derive(Debug)]
struct Compound<'t, C> {
    inner: C,
    tracker: &'t Tracker,
    /// For the two variant forms, the key of the object serde_json wraps the container in.
    variant: Option<&'static str>,
    /// The depth of the children.
    child_depth: usize,
    /// The index of the next element of a sequence or tuple.
    index: usize,
    /// The text of the key whose value comes next, for maps.
    key: Option<String>,
}

impl<'t, C> Compound<'t, C> {
    fn child<'v, T: ?Sized>(&self, value: &'v T) -> Child<'v, T>
    where
        't: 'v,
    {
        Child {
            value,
            tracker: self.tracker,
            depth: self.child_depth,
        }
    }

    fn next_index(&mut self) -> Segment<'static> {
        let index = self.index;
        self.index += 1;
        Segment::Index(index)
    }
}

macro_rules! sequence_like {
    ($($trait:ident :: $method:ident;)*) => {
        $(impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
                let segment = self.next_index();
                let child = self.child(value);
                let inner = &mut self.inner;
                self.tracker.within(self.variant, segment, || inner.$method(&child))
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        })*
    };
}

sequence_like! {
    SerializeSeq::serialize_element;
    SerializeTuple::serialize_element;
    SerializeTupleStruct::serialize_field;
    SerializeTupleVariant::serialize_field;
}

macro_rules! struct_like {
    ($($trait:ident;)*) => {
        $(impl<C: ser::$trait> ser::$trait for Compound<'_, C> {
            type Ok = C::Ok;
            type Error = C::Error;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), C::Error> {
                let child = self.child(value);
                let inner = &mut self.inner;
                self.tracker
                    .within(self.variant, Segment::Key(key), || inner.serialize_field(key, &child))
            }

            fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
                self.inner.skip_field(key)
            }

            fn end(self) -> Result<C::Ok, C::Error> {
                self.inner.end()
            }
        })*
    };
}

struct_like! {
    SerializeStruct;
    SerializeStructVariant;
}

impl<C: ser::SerializeMap> ser::SerializeMap for Compound<'_, C> {
    type Ok = C::Ok;
    type Error = C::Error;

    /// A bad key is reported at the map's path: it has no path of its own.
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        self.inner.serialize_key(&self.child(key))?;
        self.key = key_text(key);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        let key = self.key.take().unwrap_or_default();
        let child = self.child(value);
        let inner = &mut self.inner;
        self.tracker
            .within(None, Segment::Key(&key), || inner.serialize_value(&child))
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;
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
