//! Checks our CRI schema against the wire facts of kubernetes/cri-api v0.36.3
//! (`shared/compat/cri/cri-api-v0.36.3.facts.tsv`): every RPC with its request,
//! response and streaming, every field with its number and type, every enum
//! value with its number. Additions on top of v0.36.3 are allowed.

#[path = "../codegen/mod.rs"]
#[allow(dead_code)]
mod codegen;

use std::collections::HashMap;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FieldDescriptorProto};

const FACTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/compat/cri/cri-api-v0.36.3.facts.tsv"
);
const PACKAGE: &str = "runtime.v1";

/// What the schema says, indexed by the names the facts file uses.
#[derive(Default)]
struct Schema {
    /// `Service/Method` -> `Request -> Response` with `stream ` where streaming.
    rpcs: HashMap<String, String>,
    /// Message (`Outer` or `Outer.Inner`) -> field name -> (number, type).
    fields: HashMap<String, HashMap<String, (i32, FieldType)>>,
    /// Enum (`Outer` or `Outer.Inner`) -> value name -> number.
    enums: HashMap<String, HashMap<String, i32>>,
}

/// A field type: scalar or type name, repeated or map.
#[derive(Debug, Clone, PartialEq)]
enum FieldType {
    Single(String),
    Repeated(String),
    Map(String, String),
}

impl FieldType {
    /// Parses the facts file's notation: `T`, `repeated T`, `map<K,V>`.
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix("map<").and_then(|t| t.strip_suffix('>')) {
            let (key, value) = inner.split_once(',')?;
            return Some(Self::Map(key.trim().to_owned(), value.trim().to_owned()));
        }
        if let Some(element) = text.strip_prefix("repeated ") {
            return Some(Self::Repeated(element.trim().to_owned()));
        }
        (!text.is_empty() && !text.contains(' ')).then(|| Self::Single(text.to_owned()))
    }

    /// Whether `self` (from the schema) matches `fact` on the wire.
    fn matches(&self, fact: &Self) -> bool {
        match (self, fact) {
            (Self::Single(a), Self::Single(b)) | (Self::Repeated(a), Self::Repeated(b)) => {
                same_type(a, b)
            }
            (Self::Map(ka, va), Self::Map(kb, vb)) => same_type(ka, kb) && same_type(va, vb),
            _ => false,
        }
    }
}

/// Compares one element type. `string` and `bytes` share a wire type; a
/// nested type may be named by its full relative name (`Outer.Inner`) or by
/// its own name (`Inner`).
fn same_type(schema: &str, fact: &str) -> bool {
    let wire = |t: &str| {
        if t == "bytes" {
            "string".to_owned()
        } else {
            t.to_owned()
        }
    };
    let (schema, fact) = (wire(schema), wire(fact));
    schema == fact || schema.rsplit('.').next() == Some(fact.as_str())
}

fn scalar_name(field: &FieldDescriptorProto) -> Option<&'static str> {
    Some(match field.r#type() {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Message | Type::Enum | Type::Group => return None,
    })
}

/// `.runtime.v1.Outer.Inner` -> `Outer.Inner`.
fn relative_name(type_name: &str) -> String {
    let prefix = format!(".{PACKAGE}.");
    type_name
        .strip_prefix(&prefix)
        .unwrap_or(type_name)
        .to_owned()
}

fn element_type(field: &FieldDescriptorProto) -> String {
    scalar_name(field).map_or_else(|| relative_name(field.type_name()), str::to_owned)
}

impl Schema {
    fn load() -> Self {
        let fds = codegen::descriptor_set()
            .unwrap_or_else(|e| panic!("the schema does not compile: {e:?}"));
        let file = fds
            .file
            .iter()
            .find(|f| f.name() == codegen::PROTO_FILE)
            .expect("the schema file is in the descriptor set");
        assert_eq!(
            file.package(),
            PACKAGE,
            "package of {}",
            codegen::PROTO_FILE
        );
        assert_eq!(file.syntax(), "proto3", "syntax of {}", codegen::PROTO_FILE);

        let mut schema = Self::default();
        for service in &file.service {
            for method in &service.method {
                let stream = |on: bool| if on { "stream " } else { "" };
                schema.rpcs.insert(
                    format!("{}/{}", service.name(), method.name()),
                    format!(
                        "{}{} -> {}{}",
                        stream(method.client_streaming()),
                        relative_name(method.input_type()),
                        stream(method.server_streaming()),
                        relative_name(method.output_type()),
                    ),
                );
            }
        }
        for message in &file.message_type {
            schema.add_message("", message);
        }
        for enumeration in &file.enum_type {
            schema.add_enum("", enumeration);
        }
        schema
    }

    fn add_message(&mut self, outer: &str, message: &DescriptorProto) {
        let name = format!("{outer}{}", message.name());
        let entries: HashMap<String, &DescriptorProto> = message
            .nested_type
            .iter()
            .filter(|n| n.options.as_ref().is_some_and(|o| o.map_entry()))
            .map(|n| (format!("{name}.{}", n.name()), n))
            .collect();
        let mut fields = HashMap::new();
        for field in &message.field {
            let element = element_type(field);
            let field_type = if field.label() == Label::Repeated {
                match entries.get(&element) {
                    Some(entry) => {
                        let part = |number: i32| {
                            entry
                                .field
                                .iter()
                                .find(|f| f.number() == number)
                                .map(element_type)
                                .unwrap_or_default()
                        };
                        FieldType::Map(part(1), part(2))
                    }
                    None => FieldType::Repeated(element),
                }
            } else {
                FieldType::Single(element)
            };
            fields.insert(field.name().to_owned(), (field.number(), field_type));
        }
        self.fields.insert(name.clone(), fields);
        for nested in &message.nested_type {
            if !entries.contains_key(&format!("{name}.{}", nested.name())) {
                self.add_message(&format!("{name}."), nested);
            }
        }
        for enumeration in &message.enum_type {
            self.add_enum(&format!("{name}."), enumeration);
        }
    }

    fn add_enum(&mut self, outer: &str, enumeration: &EnumDescriptorProto) {
        let values = enumeration
            .value
            .iter()
            .map(|v| (v.name().to_owned(), v.number()))
            .collect();
        self.enums
            .insert(format!("{outer}{}", enumeration.name()), values);
    }
}

fn read_facts() -> String {
    std::fs::read_to_string(FACTS).unwrap_or_else(|e| {
        panic!(
            "cannot read the CRI wire facts at {FACTS}: {e}. \
             The shared/ directory (with compat/cri/cri-api-v0.36.3.facts.tsv) \
             must sit beside the checkout, i.e. at ../shared relative to the \
             workspace root."
        )
    })
}

#[test]
fn schema_matches_cri_api_v0_36_3_wire_facts() {
    let facts = read_facts();
    let schema = Schema::load();

    let mut mismatches = Vec::new();
    let (mut rpcs, mut fields, mut enum_values) = (0, 0, 0);

    for (index, line) in facts.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = index + 1;
        let cols: Vec<&str> = line.split('\t').collect();
        let col = |i: usize| cols.get(i).copied().unwrap_or("").trim();
        match col(0) {
            "rpc" => {
                rpcs += 1;
                let key = format!("{}/{}", col(1), col(2));
                let want = col(4).split_whitespace().collect::<Vec<_>>().join(" ");
                match schema.rpcs.get(&key) {
                    None => mismatches.push(format!("row {row}: rpc {key} is missing")),
                    Some(have) if *have != want => mismatches.push(format!(
                        "row {row}: rpc {key} is `{have}`, expected `{want}`"
                    )),
                    Some(_) => {}
                }
            }
            "field" => {
                fields += 1;
                let (message, name) = (col(1), col(2));
                let Ok(number) = col(3).parse::<i32>() else {
                    mismatches.push(format!("row {row}: unreadable field number {:?}", col(3)));
                    continue;
                };
                let Some(want) = FieldType::parse(col(4)) else {
                    mismatches.push(format!("row {row}: unreadable field type {:?}", col(4)));
                    continue;
                };
                match schema.fields.get(message).map(|f| f.get(name)) {
                    None => mismatches.push(format!(
                        "row {row}: message {message} is missing (wanted field {name} = {number})"
                    )),
                    Some(None) => mismatches.push(format!(
                        "row {row}: field {message}.{name} = {number} ({}) is missing",
                        col(4)
                    )),
                    Some(Some((have_number, have_type))) => {
                        if *have_number != number {
                            mismatches.push(format!(
                                "row {row}: field {message}.{name} has number {have_number}, expected {number}"
                            ));
                        }
                        if !have_type.matches(&want) {
                            mismatches.push(format!(
                                "row {row}: field {message}.{name} has type {have_type:?}, expected {want:?}"
                            ));
                        }
                    }
                }
            }
            "enumval" => {
                enum_values += 1;
                let (enumeration, name) = (col(1), col(2));
                let Ok(number) = col(3).parse::<i32>() else {
                    mismatches.push(format!("row {row}: unreadable enum number {:?}", col(3)));
                    continue;
                };
                match schema.enums.get(enumeration).map(|e| e.get(name)) {
                    None => mismatches.push(format!("row {row}: enum {enumeration} is missing")),
                    Some(None) => mismatches.push(format!(
                        "row {row}: enum value {enumeration}.{name} = {number} is missing"
                    )),
                    Some(Some(have)) if *have != number => mismatches.push(format!(
                        "row {row}: enum value {enumeration}.{name} is {have}, expected {number}"
                    )),
                    Some(Some(_)) => {}
                }
            }
            other => mismatches.push(format!("row {row}: unknown row kind {other:?}")),
        }
    }

    assert!(
        mismatches.is_empty(),
        "{} mismatch(es) between {} and {FACTS}:\n  {}",
        mismatches.len(),
        codegen::PROTO_FILE,
        mismatches.join("\n  ")
    );
    // Guard against a truncated facts file: v0.36.3 has 41 RPCs, 463 fields
    // and 95 enum values.
    assert!(
        rpcs >= 41,
        "only {rpcs} rpc rows in {FACTS}, expected at least 41"
    );
    assert!(
        fields >= 463,
        "only {fields} field rows in {FACTS}, expected at least 463"
    );
    assert!(
        enum_values >= 95,
        "only {enum_values} enumval rows in {FACTS}, expected at least 95"
    );
}

/// The checker itself must catch wrong numbers and types, or a passing run
/// proves nothing.
#[test]
fn checker_rejects_wrong_facts() {
    let schema = Schema::load();
    let (number, field_type) = &schema.fields["Mount"]["uidMappings"];
    assert_eq!(*number, 6);
    assert!(field_type.matches(&FieldType::parse("repeated IDMapping").unwrap()));
    assert!(!field_type.matches(&FieldType::parse("IDMapping").unwrap()));

    let (_, labels) = &schema.fields["PodSandboxConfig"]["labels"];
    assert!(labels.matches(&FieldType::parse("map<string,string>").unwrap()));
    assert!(!labels.matches(&FieldType::parse("repeated string").unwrap()));
    assert!(!labels.matches(&FieldType::parse("map<string,int64>").unwrap()));

    let (_, value) = &schema.fields["KeyValue"]["value"];
    assert!(value.matches(&FieldType::parse("bytes").unwrap()));
    assert!(value.matches(&FieldType::parse("string").unwrap()));
    assert!(!value.matches(&FieldType::parse("int64").unwrap()));

    let (_, profile) = &schema.fields["SecurityProfile"]["profile_type"];
    assert!(profile.matches(&FieldType::parse("ProfileType").unwrap()));
    assert!(profile.matches(&FieldType::parse("SecurityProfile.ProfileType").unwrap()));
    assert!(!profile.matches(&FieldType::parse("Protocol").unwrap()));

    assert_eq!(
        schema.rpcs["RuntimeService/GetContainerEvents"],
        "GetEventsRequest -> stream ContainerEventResponse"
    );
    assert_eq!(schema.enums["SecurityProfile.ProfileType"]["Localhost"], 2);
}
