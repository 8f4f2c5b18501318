//! The serializer behind [`to_payload`](super::to_payload): it wraps serde_json's own value
//! serializer, delegating every call so the value built is exactly serde_json's, while the
//! [`Tracker`] follows the JSON path and refuses non-finite numbers and excessive depth.

use serde::ser::{self, Serialize, SerializeMap as _, Serializer};
use serde_json::Value;

use super::{Segment, Tracker};
use crate::heartbeat::payload::HeartbeatPayloadError;

/// Serialises `value` with serde_json's value serializer, checked by `tracker` all the way down.
pub(super) fn to_value_checked<T: Serialize + ?Sized>(
    value: &T,
    tracker: &Tracker,
) -> Result<Value, serde_json::Error> {
    let root = Child {
        value,
        tracker,
        depth: 0,
    };
    root.serialize(serde_json::value::Serializer)
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

    /// Enters the object a variant is written as (`{"variant": ...}`) and the variant's value in
    /// it; returns the depth of that value's children.
    fn enter_variant<E: ser::Error>(&self, variant: &'static str) -> Result<usize, E> {
        self.tracker.enter(self.depth, None)?;
        self.tracker.enter(self.depth + 1, Some(variant))?;
        Ok(self.depth + 2)
    }
}

/// The containers serde_json writes as one array or object: one level entered.
macro_rules! container {
    ($($method:ident($len:ty) -> $compound:ident;)*) => {
        $(fn $method(self, len: $len) -> Result<Self::$compound, S::Error> {
            self.tracker.enter(self.depth, None)?;
            let inner = self.inner.$method(len)?;
            Ok(Self::compound(self.tracker, inner, None, self.depth + 1))
        })*
    };
}

/// The variants serde_json writes as an object holding a compound: both levels are entered,
/// the variant's name being the key of the inner one.
macro_rules! variant_compound {
    ($($method:ident -> $compound:ident;)*) => {
        $(fn $method(
            self,
            name: &'static str,
            index: u32,
            variant: &'static str,
            len: usize,
        ) -> Result<Self::$compound, S::Error> {
            let depth = self.enter_variant(variant)?;
            let inner = self.inner.$method(name, index, variant, len)?;
            Ok(Self::compound(self.tracker, inner, Some(variant), depth))
        })*
    };
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

    // Arrays and objects: one level down.
    container! {
        serialize_seq(Option<usize>) -> SerializeSeq;
        serialize_tuple(usize) -> SerializeTuple;
        serialize_map(Option<usize>) -> SerializeMap;
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

    // serde_json writes `{"variant": [...]}`: an object holding an array; and `{"variant":
    // {...}}`: an object holding an object.
    variant_compound! {
        serialize_tuple_variant -> SerializeTupleVariant;
        serialize_struct_variant -> SerializeStructVariant;
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
