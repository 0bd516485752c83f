//! Strict JSON decoding: objects only where a struct is expected.
//!
//! serde's derived `Deserialize` for a struct accepts a JSON object *and* the positional array
//! form (`{"shard_parameters": [2]}` would decode as `ShardParameters { count: 2, .. }`). The
//! HTTP API documents objects only, so [`from_slice`] and [`from_value`] decode through
//! [`Strict`], which refuses an array wherever a derived struct or struct variant is expected, at
//! any depth, and otherwise forwards everything to serde_json unchanged (tuples, `Vec`, tuple
//! structs, `Option`, enums, free-form `Value`s, error positions).
//!
//! Limitation: serde decodes some shapes in two passes, first buffering the input into its private
//! `Content` type through `deserialize_any`, then replaying it through its own deserializer, which
//! this adapter cannot see. Array-form structs therefore still slip through inside `untagged`
//! and internally tagged (`tag = "..."`) enums, adjacently tagged ones whose content precedes the
//! tag, and the fields a `#[serde(flatten)]` field collects (e.g. a struct-typed field of a
//! flattened struct). The struct holding the flattened field, its own fields, and a
//! `Map<String, Value>` catch-all are unaffected.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, Expected, MapAccess,
    SeqAccess, Unexpected, VariantAccess, Visitor,
};

/// Decodes `bytes` like `serde_json::from_slice`, refusing the array form of structs.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = T::deserialize(Strict::new(&mut de))?;
    de.end()?;
    Ok(value)
}

/// Decodes `value` like `serde_json::from_value`, refusing the array form of structs.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, serde_json::Error> {
    T::deserialize(Strict::new(value))
}

/// A deserializer that behaves like `D` but refuses a sequence where a struct is expected.
#[derive(Debug, Clone, Copy)]
pub struct Strict<D>(D);

impl<D> Strict<D> {
    /// Wraps `inner`; every value decoded through it, at any depth, is checked.
    pub fn new(inner: D) -> Self {
        Strict(inner)
    }
}

/// What the caller of a wrapped visitor asked for.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    Enum(&'static str),
    Struct(&'static str),
    StructVariant(&'static str),
}

impl Expected for Expect {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Expect::Struct(name) => write!(f, "a JSON object for struct {name}"),
            Expect::StructVariant(name) => {
                write!(f, "a JSON object for a struct variant of enum {name}")
            }
            Expect::Any | Expect::Enum(_) => f.write_str("a JSON value"),
        }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method($($arg,)* StrictVisitor(visitor, Expect::Any))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any(); deserialize_bool(); deserialize_char();
        deserialize_i8(); deserialize_i16(); deserialize_i32(); deserialize_i64();
        deserialize_i128(); deserialize_u8(); deserialize_u16(); deserialize_u32();
        deserialize_u64(); deserialize_u128(); deserialize_f32(); deserialize_f64();
        deserialize_str(); deserialize_string(); deserialize_bytes(); deserialize_byte_buf();
        deserialize_option(); deserialize_unit(); deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str); deserialize_seq();
        deserialize_tuple(len: usize); deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map(); deserialize_identifier(); deserialize_ignored_any();
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_struct(name, fields, StrictVisitor(visitor, Expect::Struct(name)))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_enum(name, variants, StrictVisitor(visitor, Expect::Enum(name)))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// Forwards to the wrapped visitor, wrapping whatever it is handed to decode further.
struct StrictVisitor<V>(V, Expect);

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.0.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for StrictVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    forward_visit! {
        visit_bool(bool); visit_char(char);
        visit_i8(i8); visit_i16(i16); visit_i32(i32); visit_i64(i64); visit_i128(i128);
        visit_u8(u8); visit_u16(u16); visit_u32(u32); visit_u64(u64); visit_u128(u128);
        visit_f32(f32); visit_f64(f64);
        visit_str(&str); visit_borrowed_str(&'de str); visit_string(String);
        visit_bytes(&[u8]); visit_borrowed_bytes(&'de [u8]); visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_some(Strict(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_newtype_struct(Strict(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        match self.1 {
            Expect::Struct(_) | Expect::StructVariant(_) => {
                Err(de::Error::invalid_type(Unexpected::Seq, &self.1))
            }
            Expect::Any | Expect::Enum(_) => self.0.visit_seq(StrictSeq(seq)),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(StrictMap(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let name = match self.1 {
            Expect::Enum(name) => name,
            _ => "?",
        };
        self.0.visit_enum(StrictEnum { inner: data, name })
    }
}

/// A seed whose deserializer is wrapped in [`Strict`].
struct StrictSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

struct StrictSeq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for StrictSeq<A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.0.next_element_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

struct StrictMap<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(StrictSeed(seed))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.0.next_value_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// An enum's access, carrying the enum's name for the error on an array-form struct variant.
struct StrictEnum<A> {
    inner: A,
    name: &'static str,
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for StrictEnum<A> {
    type Error = A::Error;
    type Variant = StrictEnum<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let name = self.name;
        let (value, inner) = self.inner.variant_seed(StrictSeed(seed))?;
        Ok((value, StrictEnum { inner, name }))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for StrictEnum<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.newtype_variant_seed(StrictSeed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner
            .tuple_variant(len, StrictVisitor(visitor, Expect::Any))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(
            fields,
            StrictVisitor(visitor, Expect::StructVariant(self.name)),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde::de::DeserializeOwned;
    use serde_json::{Map, Value, json};

    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Params {
        count: u8,
        #[serde(default)]
        stripe: u32,
    }

    fn params(count: u8, stripe: u32) -> Params {
        Params { count, stripe }
    }

    #[derive(Debug, PartialEq, Deserialize)]
    enum Mode {
        Detached,
        Attached(u64),
        Split(Params),
        Moving { from: u64, to: u64 },
        Pair(u8, u8),
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Req {
        params: Params,
        #[serde(default)]
        list: Vec<Params>,
        maybe: Option<Params>,
        mode: Option<Mode>,
        pair: Option<(String, u32)>,
        #[serde(default)]
        free: Value,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Flat {
        params: Option<Params>,
        #[serde(flatten)]
        rest: Map<String, Value>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Closed {
        a: u8,
    }

    /// Checks that serde_json accepts `json` and both strict entry points refuse it.
    fn refused<T: DeserializeOwned + fmt::Debug>(json: &str) -> String {
        assert!(serde_json::from_str::<T>(json).is_ok(), "{json}");
        let value = serde_json::from_str::<Value>(json).map(from_value::<T>);
        assert!(matches!(value, Ok(Err(_))), "from_value accepted {json}");
        from_slice::<T>(json.as_bytes())
            .expect_err(json)
            .to_string()
    }

    /// Checks that both strict entry points decode `json` exactly as serde_json does.
    fn accepted<T: DeserializeOwned + PartialEq + fmt::Debug>(json: &str) -> T {
        let plain: T = serde_json::from_str(json).expect(json);
        let value: T = from_value(serde_json::from_str(json).expect(json)).expect(json);
        assert_eq!(value, plain, "{json}");
        let strict: T = from_slice(json.as_bytes()).expect(json);
        assert_eq!(strict, plain, "{json}");
        strict
    }

    #[test]
    fn array_form_of_structs_is_refused_at_any_depth() {
        let e = refused::<Params>("[2]");
        assert!(
            e.contains("expected a JSON object for struct Params"),
            "{e}"
        );
        let e = refused::<Req>(r#"{"params": [2, 8]}"#);
        let want = "expected a JSON object for struct Params at line 1 column 12";
        assert_eq!(e, format!("invalid type: sequence, {want}"));
        for field in [
            r#""list": [{"count": 1}, [2]]"#,
            r#""maybe": [2]"#,
            r#""mode": {"Split": [2]}"#,
            r#""mode": {"Moving": [1, 2]}"#,
        ] {
            let e = refused::<Req>(&format!(r#"{{"params": {{"count": 1}}, {field}}}"#));
            assert!(e.contains("expected a JSON object for "), "{e}");
            assert!(e.contains(" at line 1 column "), "{e}");
        }
        let e = refused::<Mode>(r#"{"Moving": [1, 2]}"#);
        assert!(e.contains("for a struct variant of enum Mode"), "{e}");
    }

    #[test]
    fn object_form_and_other_arrays_are_accepted() {
        let req: Req = accepted(
            r#"{"params": {"count": 1}, "list": [{"count": 2, "stripe": 8}], "maybe": {"count": 3},
                "mode": {"Split": {"count": 4}}, "pair": ["x", 5], "free": [1, [2]]}"#,
        );
        assert_eq!((req.params, req.list), (params(1, 0), vec![params(2, 8)]));
        assert_eq!(req.maybe, Some(params(3, 0)));
        assert_eq!(req.mode, Some(Mode::Split(params(4, 0))));
        assert_eq!(req.pair, Some(("x".to_string(), 5)));
        assert_eq!(req.free, json!([1, [2]]));
        let modes: Vec<Mode> = accepted(
            r#"["Detached", {"Attached": 1}, {"Moving": {"from": 1, "to": 2}}, {"Pair": [1, 2]}]"#,
        );
        let want = [
            Mode::Detached,
            Mode::Attached(1),
            Mode::Moving { from: 1, to: 2 },
        ];
        assert_eq!(modes[..3], want);
        assert_eq!(modes[3], Mode::Pair(1, 2));
        assert_eq!(accepted::<(String, u32)>(r#"["a", 1]"#), ("a".into(), 1));
        assert_eq!(accepted::<Vec<u8>>("[1, 2]"), vec![1, 2]);
    }

    #[test]
    fn flatten_deny_unknown_and_trailing_behave_like_serde_json() {
        let flat: Flat = accepted(r#"{"params": null, "x": [1, 2], "y": {"z": null}}"#);
        assert_eq!(
            Value::Object(flat.rest),
            json!({"x": [1, 2], "y": {"z": null}})
        );
        refused::<Flat>(r#"{"params": [2]}"#);
        let e = from_slice::<Closed>(br#"{"a": 1, "b": 2}"#).expect_err("unknown field");
        assert!(e.to_string().starts_with("unknown field `b`"), "{e}");
        assert!(from_value::<Closed>(json!({"a": 1, "b": 2})).is_err());
        assert_eq!(accepted::<Closed>(r#"{"a": 1}"#), Closed { a: 1 });
        let e = from_slice::<Closed>(br#"{"a": 1} x"#).expect_err("trailing");
        assert_eq!(e.to_string(), "trailing characters at line 1 column 10");
    }

    #[test]
    fn valid_inputs_and_errors_match_serde_json() {
        accepted::<Req>(r#"{"params": {"count": 1}, "mode": {"Pair": [3, 4]}, "free": null}"#);
        accepted::<Option<Params>>("null");
        accepted::<Map<String, Value>>(r#"{"k": [[], {}, "s", 1.5, true]}"#);
        accepted::<Vec<Option<Mode>>>(r#"[null, "Detached", {"Attached": 7}]"#);
        accepted::<(u64, i64, f64, u128)>(&format!("[{}, {}, -1.5e3, 3]", u64::MAX, i64::MIN));
        // A `Value` holds no integer past u64, so this one goes through `from_slice` only.
        let big = format!("[{}]", u128::MAX);
        assert_eq!(
            from_slice::<[u128; 1]>(big.as_bytes()).ok(),
            Some([u128::MAX])
        );
        for bad in [
            r#"{"count": "x"}"#,
            r#"{"count": 1"#,
            r#"{"stripe": 1}"#,
            "7",
        ] {
            let strict = from_slice::<Params>(bad.as_bytes()).expect_err(bad);
            let plain = serde_json::from_str::<Params>(bad).expect_err(bad);
            assert_eq!(strict.to_string(), plain.to_string());
        }
    }

    #[test]
    fn borrowed_strings_and_bytes_are_forwarded() {
        #[derive(Deserialize)]
        struct Borrowed<'a> {
            s: &'a str,
            b: &'a [u8],
        }
        let mut de = serde_json::Deserializer::from_str(r#"{"s": "abc", "b": "xy"}"#);
        let v = Borrowed::deserialize(Strict::new(&mut de)).expect("borrowed");
        assert_eq!((v.s, v.b), ("abc", &b"xy"[..]));
        let mut de = serde_json::Deserializer::from_str(r#"["abc", "xy"]"#);
        assert!(Borrowed::deserialize(Strict::new(&mut de)).is_err());
    }

    #[test]
    fn buffered_content_is_not_checked() {
        // The documented limitation: serde replays buffered input through its own deserializer.
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(untagged)]
        enum Either {
            P(Params),
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct Outer {
            #[serde(flatten)]
            inner: Inner,
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct Inner {
            params: Params,
        }
        assert_eq!(accepted::<Either>("[2]"), Either::P(params(2, 0)));
        accepted::<Outer>(r#"{"params": [2]}"#);
    }
}
