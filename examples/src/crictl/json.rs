//! JSON and YAML output as crictl writes it.
//!
//! crictl prints list responses with Go's `protojson` (fields in schema order,
//! map keys sorted) and status objects (`inspect`, `inspectp`, `inspecti`,
//! `info`, `imagefsinfo`) through a Go map (every key sorted); its YAML always
//! has sorted keys. CRI messages hold `HashMap`s, so serializing them straight
//! to text would print map keys in random order: [`to_value`] turns any
//! `Serialize` value into a [`Value`] that keeps struct fields in order and
//! sorts map keys, and [`Value::sort_keys`] sorts everything.

use std::fmt;

use serde::ser::{self, Serialize};

/// A JSON value whose objects keep their key order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object, in key order as built.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// Sorts the keys of every object, recursively (Go's `encoding/json` on a
    /// map, and YAML through `sigs.k8s.io/yaml`).
    pub(crate) fn sort_keys(&mut self) {
        match self {
            Value::Array(items) => items.iter_mut().for_each(Value::sort_keys),
            Value::Object(entries) => {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                entries.iter_mut().for_each(|(_, v)| v.sort_keys());
            }
            _ => {}
        }
    }

    /// Replaces the value of `key` in an object, or appends it.
    pub(crate) fn set(&mut self, key: &str, value: Value) {
        if let Value::Object(entries) = self {
            match entries.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = value,
                None => entries.push((key.to_owned(), value)),
            }
        }
    }

    /// The value of `key` in an object.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Pretty JSON with two-space indentation, as Go's `json.Indent`.
    pub(crate) fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Value always serializes to JSON")
    }

    /// YAML with sorted keys, as crictl's `yaml.JSONToYAML` writes it.
    pub(crate) fn to_yaml(&self) -> String {
        let mut sorted = self.clone();
        sorted.sort_keys();
        serde_yaml_ng::to_string(&sorted).expect("a Value always serializes to YAML")
    }

    /// Converts from a `serde_json::Value` (whose objects are sorted).
    pub(crate) fn from_json(value: serde_json::Value) -> Self {
        match value {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(n),
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(items) => {
                Value::Array(items.into_iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, Value::from_json(v)))
                    .collect(),
            ),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(n) => n.serialize(serializer),
            Value::String(s) => serializer.serialize_str(s),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// Why a value could not become a [`Value`].
#[derive(Debug)]
pub(crate) struct ToValueError(String);

impl fmt::Display for ToValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToValueError {}

impl ser::Error for ToValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ToValueError(msg.to_string())
    }
}

/// Serializes `value` into a [`Value`]: struct fields in declaration order,
/// map entries sorted by key.
pub(crate) fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ToValueError> {
    value.serialize(ValueSerializer)
}

/// Pretty JSON of a protobuf message, as crictl's `outputProtobufObjAsJSON`.
pub(crate) fn message_json<T: Serialize + ?Sized>(value: &T) -> Result<String, ToValueError> {
    Ok(to_value(value)?.to_json_pretty())
}

/// YAML of a protobuf message, as crictl's `outputProtobufObjAsYAML`.
pub(crate) fn message_yaml<T: Serialize + ?Sized>(value: &T) -> Result<String, ToValueError> {
    Ok(to_value(value)?.to_yaml())
}

struct ValueSerializer;

fn number(n: impl Into<serde_json::Number>) -> Result<Value, ToValueError> {
    Ok(Value::Number(n.into()))
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = ToValueError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = VariantBuilder<SeqBuilder>;
    type SerializeMap = MapBuilder;
    type SerializeStruct = StructBuilder;
    type SerializeStructVariant = VariantBuilder<StructBuilder>;

    fn serialize_bool(self, v: bool) -> Result<Value, ToValueError> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, ToValueError> {
        number(v)
    }
    fn serialize_i16(self, v: i16) -> Result<Value, ToValueError> {
        number(v)
    }
    fn serialize_i32(self, v: i32) -> Result<Value, ToValueError> {
        number(v)
    }
    fn serialize_i64(self, v: i64) -> Result<Value, ToValueError> {
        number(v)
    }
    fn serialize_u8(self, v: u8) -> Result<Value, ToValueError> {
        number(v)
    }
    fn serialize_u16(self, v: u16) -> Result<Value, ToValueError> {
        number(v)
    }
    fn serialize_u32(self, v: u32) -> Result<Value, ToValueError> {
        number(v)
    }
    fn serialize_u64(self, v: u64) -> Result<Value, ToValueError> {
        number(v)
    }
    fn serialize_f32(self, v: f32) -> Result<Value, ToValueError> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, ToValueError> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn serialize_char(self, v: char) -> Result<Value, ToValueError> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, ToValueError> {
        Ok(Value::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ToValueError> {
        Ok(Value::Array(
            v.iter().map(|b| Value::Number((*b).into())).collect(),
        ))
    }
    fn serialize_none(self) -> Result<Value, ToValueError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, ToValueError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, ToValueError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, ToValueError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, ToValueError> {
        Ok(Value::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, ToValueError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, ToValueError> {
        Ok(Value::Object(vec![(
            variant.to_owned(),
            value.serialize(self)?,
        )]))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, ToValueError> {
        Ok(SeqBuilder(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, ToValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, ToValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantBuilder<SeqBuilder>, ToValueError> {
        Ok(VariantBuilder {
            variant,
            inner: SeqBuilder(Vec::with_capacity(len)),
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<MapBuilder, ToValueError> {
        Ok(MapBuilder {
            entries: Vec::new(),
            key: None,
        })
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<StructBuilder, ToValueError> {
        Ok(StructBuilder(Vec::with_capacity(len)))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantBuilder<StructBuilder>, ToValueError> {
        Ok(VariantBuilder {
            variant,
            inner: StructBuilder(Vec::with_capacity(len)),
        })
    }
}

struct SeqBuilder(Vec<Value>);

impl SeqBuilder {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToValueError> {
        self.0.push(to_value(value)?);
        Ok(())
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Value;
    type Error = ToValueError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToValueError> {
        self.push(value)
    }
    fn end(self) -> Result<Value, ToValueError> {
        Ok(Value::Array(self.0))
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = Value;
    type Error = ToValueError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToValueError> {
        self.push(value)
    }
    fn end(self) -> Result<Value, ToValueError> {
        Ok(Value::Array(self.0))
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Value;
    type Error = ToValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToValueError> {
        self.push(value)
    }
    fn end(self) -> Result<Value, ToValueError> {
        Ok(Value::Array(self.0))
    }
}

struct StructBuilder(Vec<(String, Value)>);

impl ser::SerializeStruct for StructBuilder {
    type Ok = Value;
    type Error = ToValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ToValueError> {
        self.0.push((key.to_owned(), to_value(value)?));
        Ok(())
    }
    fn end(self) -> Result<Value, ToValueError> {
        Ok(Value::Object(self.0))
    }
}

struct MapBuilder {
    entries: Vec<(String, Value)>,
    key: Option<String>,
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Value;
    type Error = ToValueError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ToValueError> {
        let key = match to_value(key)? {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(ToValueError(format!(
                    "map keys must be strings, not {other:?}"
                )));
            }
        };
        self.key = Some(key);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToValueError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| ToValueError("a map value came before its key".into()))?;
        self.entries.push((key, to_value(value)?));
        Ok(())
    }
    fn end(mut self) -> Result<Value, ToValueError> {
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Value::Object(self.entries))
    }
}

struct VariantBuilder<B> {
    variant: &'static str,
    inner: B,
}

impl ser::SerializeTupleVariant for VariantBuilder<SeqBuilder> {
    type Ok = Value;
    type Error = ToValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToValueError> {
        self.inner.push(value)
    }
    fn end(self) -> Result<Value, ToValueError> {
        Ok(Value::Object(vec![(
            self.variant.to_owned(),
            Value::Array(self.inner.0),
        )]))
    }
}

impl ser::SerializeStructVariant for VariantBuilder<StructBuilder> {
    type Ok = Value;
    type Error = ToValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ToValueError> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, value)
    }
    fn end(self) -> Result<Value, ToValueError> {
        Ok(Value::Object(vec![(
            self.variant.to_owned(),
            Value::Object(self.inner.0),
        )]))
    }
}

/// A status object, its runtime `info` and anything else crictl shows next
/// to it (`runtimeHandlers`, `features`), for [`status_output`].
#[derive(Debug, Default)]
pub(crate) struct StatusData {
    /// The status object (already adjusted, e.g. timestamps as text).
    pub(crate) status: Option<Value>,
    /// `runtimeHandlers` of `info`, when the runtime reports any.
    pub(crate) runtime_handlers: Option<Value>,
    /// `features` of `info`, when the runtime reports them.
    pub(crate) features: Option<Value>,
    /// The verbose `info` map of the response.
    pub(crate) info: Vec<(String, String)>,
}

/// crictl's `outputStatusData`: each status as an object with `status` and
/// the `info` entries (JSON objects parsed, other values as strings without
/// their quotes), every key sorted; one status alone is not wrapped in an
/// array. `format` is `json` or `yaml`.
pub(crate) fn status_output(statuses: Vec<StatusData>, format: &str) -> Result<String, String> {
    if statuses.is_empty() {
        return Ok(String::new());
    }
    let mut results = Vec::with_capacity(statuses.len());
    for data in statuses {
        let mut object = Vec::new();
        if let Some(status) = data.status {
            object.push(("status".to_owned(), status));
        }
        if let Some(handlers) = data.runtime_handlers {
            object.push(("runtimeHandlers".to_owned(), handlers));
        }
        if let Some(features) = data.features {
            object.push(("features".to_owned(), features));
        }
        for (key, text) in data.info {
            let value = if text.starts_with('{') {
                let parsed: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| format!("unmarshal status info JSON: {e}"))?;
                Value::from_json(parsed)
            } else {
                Value::String(text.trim_matches('"').to_owned())
            };
            object.push((key, value));
        }
        results.push(Value::Object(object));
    }
    let mut result = if results.len() == 1 {
        results.pop().expect("one result")
    } else {
        Value::Array(results)
    };
    result.sort_keys();
    match format {
        "json" => Ok(format!("{}\n", result.to_json_pretty())),
        "yaml" => Ok(format!("{}\n", result.to_yaml())),
        other => Err(format!("unsupported format: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(serde::Serialize)]
    struct Pod {
        zeta: u32,
        alpha: &'static str,
        labels: HashMap<&'static str, &'static str>,
        missing: Option<u8>,
        kind: Kind,
    }

    #[derive(serde::Serialize)]
    enum Kind {
        Sandbox,
    }

    fn pod() -> Pod {
        Pod {
            zeta: 1,
            alpha: "a",
            labels: [("b", "2"), ("a", "1"), ("c", "3")].into(),
            missing: None,
            kind: Kind::Sandbox,
        }
    }

    #[test]
    fn struct_fields_keep_their_order_and_map_keys_are_sorted() {
        let text = message_json(&pod()).unwrap();
        assert_eq!(
            text,
            "{\n  \"zeta\": 1,\n  \"alpha\": \"a\",\n  \"labels\": {\n    \"a\": \"1\",\n    \"b\": \"2\",\n    \"c\": \"3\"\n  },\n  \"missing\": null,\n  \"kind\": \"Sandbox\"\n}"
        );
    }

    #[test]
    fn yaml_sorts_every_key() {
        let text = message_yaml(&pod()).unwrap();
        assert_eq!(
            text,
            "alpha: a\nkind: Sandbox\nlabels:\n  a: '1'\n  b: '2'\n  c: '3'\nmissing: null\nzeta: 1\n"
        );
    }

    #[test]
    fn cri_messages_serialize_in_schema_order() {
        let response = cri_client::v1::ListContainersResponse {
            containers: vec![cri_client::v1::Container {
                id: "c1".into(),
                created_at: 5,
                labels: [
                    ("z".to_owned(), "1".to_owned()),
                    ("a".to_owned(), "2".to_owned()),
                ]
                .into(),
                ..Default::default()
            }],
        };
        let value = to_value(&response).unwrap();
        let Some(Value::Array(containers)) = value.get("containers") else {
            panic!("{value:?}")
        };
        let Value::Object(fields) = &containers[0] else {
            panic!()
        };
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        // Unset messages (metadata, image) are left out; defaults are emitted.
        assert_eq!(
            keys,
            [
                "id",
                "podSandboxId",
                "imageRef",
                "state",
                "createdAt",
                "labels",
                "annotations",
                "imageId"
            ]
        );
        assert_eq!(
            containers[0].get("createdAt"),
            Some(&Value::String("5".into()))
        );
        let Some(Value::Object(labels)) = containers[0].get("labels") else {
            panic!()
        };
        assert_eq!(labels[0].0, "a");
    }

    #[test]
    fn status_output_merges_info_and_sorts_keys() {
        let status = Value::Object(vec![
            ("id".into(), Value::String("x".into())),
            ("createdAt".into(), Value::String("t".into())),
        ]);
        let data = StatusData {
            status: Some(status),
            info: vec![
                ("info".into(), r#"{"pid":42,"b":true}"#.into()),
                ("note".into(), "\"quoted\"".into()),
            ],
            ..Default::default()
        };
        let text = status_output(vec![data], "json").unwrap();
        assert_eq!(
            text,
            "{\n  \"info\": {\n    \"b\": true,\n    \"pid\": 42\n  },\n  \"note\": \"quoted\",\n  \"status\": {\n    \"createdAt\": \"t\",\n    \"id\": \"x\"\n  }\n}\n"
        );
        let two =
            status_output(vec![StatusData::default(), StatusData::default()], "json").unwrap();
        assert_eq!(two, "[\n  {},\n  {}\n]\n");
        assert_eq!(
            status_output(vec![StatusData::default()], "xml"),
            Err("unsupported format: \"xml\"".into())
        );
        assert_eq!(status_output(Vec::new(), "json"), Ok(String::new()));
    }
}
