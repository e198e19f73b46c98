//! The API reference, generated from the descriptor set ([`crate::FILE_DESCRIPTOR_SET`], which
//! keeps the `.proto` files' comments): one Markdown page per package under `docs/api/` and an
//! index, listing every service and RPC (with its access marker, idempotency and comments),
//! every message and its fields, every enum and its values.
//!
//! `cargo run -p mall-proto --bin api-reference` writes the pages; a test of this crate fails
//! while they differ from what the protos say.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::method_options::IdempotencyLevel;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet, SourceCodeInfo,
};

/// Where the pages go, relative to the repository root.
pub const DIR: &str = "docs/api";

// Field numbers of the descriptor messages, as source-code-info paths use them.
const FILE_MESSAGE: i32 = 4;
const FILE_ENUM: i32 = 5;
const FILE_SERVICE: i32 = 6;
const MESSAGE_FIELD: i32 = 2;
const MESSAGE_NESTED: i32 = 3;
const MESSAGE_ENUM: i32 = 4;
const ENUM_VALUE: i32 = 2;
const SERVICE_METHOD: i32 = 2;

/// Every page: file name (under [`DIR`]) → Markdown.
pub fn pages() -> BTreeMap<String, String> {
    // Generated at build time from our own protos; it always decodes.
    let set = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap_or_default();
    let mut files: Vec<&FileDescriptorProto> = set
        .file
        .iter()
        .filter(|f| f.package().starts_with("tiktokmall."))
        .collect();
    files.sort_by_key(|f| f.name());
    let mut pages = BTreeMap::new();
    let mut index = String::from(
        "# API reference\n\n\
         Generated from the `.proto` files by `cargo run -p mall-proto --bin api-reference`; do \
         not edit (a test fails while these pages differ from the protos). Semantics shared by \
         every service (errors, paging, ids, money, tokens) are in [../API.md](../API.md).\n\n\
         | package | file | services |\n|---|---|---|\n",
    );
    for file in files {
        let page = format!("{}.md", file.package());
        let services: Vec<&str> = file.service.iter().map(|s| s.name()).collect();
        let _ = writeln!(
            index,
            "| [`{}`]({page}) | `proto/{}` | {} |",
            file.package(),
            file.name(),
            if services.is_empty() {
                "—".to_string()
            } else {
                services.join(", ")
            }
        );
        pages.insert(page, file_page(file));
    }
    pages.insert("README.md".into(), index);
    pages
}

/// The comments of the element at `path` in `info`: leading (detached ones first), then
/// trailing, trimmed.
fn comments(info: Option<&SourceCodeInfo>, path: &[i32]) -> String {
    let Some(location) = info.and_then(|i| i.location.iter().find(|l| l.path == path)) else {
        return String::new();
    };
    let mut parts: Vec<String> = location.leading_detached_comments.to_vec();
    parts.extend(location.leading_comments.clone());
    parts.extend(location.trailing_comments.clone());
    parts
        .iter()
        .map(|c| {
            c.lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string()
        })
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// `text` on one table cell: newlines become spaces, pipes are escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// A type name relative to `package`, linked when it is a message or enum of the contract.
fn type_link(name: &str, package: &str) -> String {
    let name = name.trim_start_matches('.');
    if !name.starts_with("tiktokmall.") {
        return format!("`{name}`");
    }
    let (pkg, short) = split_type(name);
    let anchor = anchor(short);
    if pkg == package {
        format!("[`{short}`](#{anchor})")
    } else {
        format!("[`{name}`]({pkg}.md#{anchor})")
    }
}

/// `tiktokmall.cart.v1.CartItem` → (`tiktokmall.cart.v1`, `CartItem`); nested types keep
/// their parent (`Order.Line`).
fn split_type(name: &str) -> (&str, &str) {
    // Packages are lower case, types start with a capital.
    let at = name
        .split('.')
        .take_while(|part| part.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
        .map(|part| part.len() + 1)
        .sum::<usize>();
    let at = at.min(name.len());
    (name[..at].trim_end_matches('.'), &name[at..])
}

fn anchor(name: &str) -> String {
    name.to_ascii_lowercase().replace('.', "")
}

fn field_type(
    field: &FieldDescriptorProto,
    package: &str,
    maps: &BTreeMap<String, String>,
) -> String {
    let base = match field.r#type() {
        Type::Message | Type::Enum => {
            if let Some(map) = maps.get(field.type_name().trim_start_matches('.')) {
                return map.clone();
            }
            type_link(field.type_name(), package)
        }
        Type::Double => "`double`".into(),
        Type::Float => "`float`".into(),
        Type::Int64 => "`int64`".into(),
        Type::Uint64 => "`uint64`".into(),
        Type::Int32 => "`int32`".into(),
        Type::Fixed64 => "`fixed64`".into(),
        Type::Fixed32 => "`fixed32`".into(),
        Type::Bool => "`bool`".into(),
        Type::String => "`string`".into(),
        Type::Group => "`group`".into(),
        Type::Bytes => "`bytes`".into(),
        Type::Uint32 => "`uint32`".into(),
        Type::Sfixed32 => "`sfixed32`".into(),
        Type::Sfixed64 => "`sfixed64`".into(),
        Type::Sint32 => "`sint32`".into(),
        Type::Sint64 => "`sint64`".into(),
    };
    if field.label() == Label::Repeated {
        format!("repeated {base}")
    } else if field.proto3_optional() {
        format!("optional {base}")
    } else {
        base
    }
}

fn file_page(file: &FileDescriptorProto) -> String {
    let package = file.package();
    let info = file.source_code_info.as_ref();
    let mut out = format!("# `{package}`\n\n");
    let _ = writeln!(
        out,
        "Source: `proto/{}`. [All packages](README.md).\n",
        file.name()
    );
    // The file's own comment sits on its `syntax` (path [12]) or `package` (path [2]).
    for path in [[12], [2]] {
        let text = comments(info, &path);
        if !text.is_empty() {
            let _ = writeln!(out, "{text}\n");
        }
    }
    for (i, service) in file.service.iter().enumerate() {
        let path = [FILE_SERVICE, i32::try_from(i).unwrap_or(0)];
        let _ = writeln!(out, "## Service `{}`\n", service.name());
        let text = comments(info, &path);
        if !text.is_empty() {
            let _ = writeln!(out, "{text}\n");
        }
        let _ = writeln!(
            out,
            "`/{package}.{}/<Method>`\n\n| RPC | request | response | retry-safe | description |\n|---|---|---|---|---|",
            service.name()
        );
        for (j, method) in service.method.iter().enumerate() {
            let mut method_path = path.to_vec();
            method_path.extend([SERVICE_METHOD, i32::try_from(j).unwrap_or(0)]);
            let level = method
                .options
                .as_ref()
                .map_or(IdempotencyLevel::IdempotencyUnknown, |o| {
                    o.idempotency_level()
                });
            let retry = match level {
                IdempotencyLevel::NoSideEffects => "yes (read)",
                IdempotencyLevel::Idempotent => "yes",
                IdempotencyLevel::IdempotencyUnknown => "no",
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {retry} | {} |",
                method.name(),
                type_link(method.input_type(), package),
                type_link(method.output_type(), package),
                cell(&comments(info, &method_path)),
            );
        }
        out.push('\n');
    }
    if !file.message_type.is_empty() {
        out.push_str("## Messages\n\n");
        for (i, message) in file.message_type.iter().enumerate() {
            message_section(
                &mut out,
                message,
                "",
                &[FILE_MESSAGE, i32::try_from(i).unwrap_or(0)],
                package,
                info,
            );
        }
    }
    if !file.enum_type.is_empty() {
        out.push_str("## Enums\n\n");
        for (i, e) in file.enum_type.iter().enumerate() {
            enum_section(
                &mut out,
                e,
                "",
                &[FILE_ENUM, i32::try_from(i).unwrap_or(0)],
                info,
            );
        }
    }
    out
}

/// Map fields are repeated entries of a synthetic `XEntry` message: shown as `map<K, V>`.
fn map_entries(message: &DescriptorProto, full: &str, package: &str) -> BTreeMap<String, String> {
    let mut maps = BTreeMap::new();
    for nested in &message.nested_type {
        if nested.options.as_ref().is_some_and(|o| o.map_entry()) {
            let kv: Vec<String> = nested
                .field
                .iter()
                .map(|f| field_type(f, package, &BTreeMap::new()))
                .collect();
            maps.insert(
                format!("{full}.{}", nested.name()),
                format!("map<{}>", kv.join(", ")),
            );
        }
    }
    maps
}

fn message_section(
    out: &mut String,
    message: &DescriptorProto,
    parent: &str,
    path: &[i32],
    package: &str,
    info: Option<&SourceCodeInfo>,
) {
    let name = if parent.is_empty() {
        message.name().to_string()
    } else {
        format!("{parent}.{}", message.name())
    };
    let _ = writeln!(out, "### `{name}`\n");
    let text = comments(info, path);
    if !text.is_empty() {
        let _ = writeln!(out, "{text}\n");
    }
    let full = format!("{package}.{name}");
    let maps = map_entries(message, &full, package);
    if message.field.is_empty() {
        out.push_str("No fields.\n\n");
    } else {
        out.push_str("| # | field | type | description |\n|---:|---|---|---|\n");
        for (k, field) in message.field.iter().enumerate() {
            let mut field_path = path.to_vec();
            field_path.extend([MESSAGE_FIELD, i32::try_from(k).unwrap_or(0)]);
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} |",
                field.number(),
                field.name(),
                field_type(field, package, &maps),
                cell(&comments(info, &field_path)),
            );
        }
        out.push('\n');
    }
    for (k, nested) in message.nested_type.iter().enumerate() {
        if nested.options.as_ref().is_some_and(|o| o.map_entry()) {
            continue;
        }
        let mut nested_path = path.to_vec();
        nested_path.extend([MESSAGE_NESTED, i32::try_from(k).unwrap_or(0)]);
        message_section(out, nested, &name, &nested_path, package, info);
    }
    for (k, e) in message.enum_type.iter().enumerate() {
        let mut enum_path = path.to_vec();
        enum_path.extend([MESSAGE_ENUM, i32::try_from(k).unwrap_or(0)]);
        enum_section(out, e, &name, &enum_path, info);
    }
}

fn enum_section(
    out: &mut String,
    e: &EnumDescriptorProto,
    parent: &str,
    path: &[i32],
    info: Option<&SourceCodeInfo>,
) {
    let name = if parent.is_empty() {
        e.name().to_string()
    } else {
        format!("{parent}.{}", e.name())
    };
    let _ = writeln!(out, "### `{name}`\n");
    let text = comments(info, path);
    if !text.is_empty() {
        let _ = writeln!(out, "{text}\n");
    }
    out.push_str("| value | name | description |\n|---:|---|---|\n");
    for (k, value) in e.value.iter().enumerate() {
        let mut value_path = path.to_vec();
        value_path.extend([ENUM_VALUE, i32::try_from(k).unwrap_or(0)]);
        let _ = writeln!(
            out,
            "| {} | `{}` | {} |",
            value.number(),
            value.name(),
            cell(&comments(info, &value_path)),
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_split_into_package_and_type() {
        assert_eq!(
            split_type("tiktokmall.cart.v1.CartItem"),
            ("tiktokmall.cart.v1", "CartItem")
        );
        assert_eq!(
            split_type("tiktokmall.order.v1.Order.Line"),
            ("tiktokmall.order.v1", "Order.Line")
        );
        assert_eq!(
            type_link(".tiktokmall.common.v1.Address", "tiktokmall.order.v1"),
            "[`tiktokmall.common.v1.Address`](tiktokmall.common.v1.md#address)"
        );
        assert_eq!(cell("a |\n b"), "a \\| b");
    }

    #[test]
    fn every_rpc_and_its_comment_is_in_the_reference() {
        let pages = pages();
        let cart = &pages["tiktokmall.cart.v1.md"];
        assert!(cart.contains("## Service `CartService`"), "{cart}");
        assert!(
            cart.contains("| `GetCart` | [`GetCartReq`](#getcartreq)"),
            "{cart}"
        );
        assert!(cart.contains("yes (read)"));
        assert!(cart.contains("takes what an order bought out of its buyer's cart"));
        for rpc in crate::rpcs::all().values() {
            let page = rpc.service.rsplit_once('.').map(|(p, _)| p).unwrap();
            assert!(
                pages[&format!("{page}.md")].contains(&format!("| `{}` |", rpc.method)),
                "{} missing",
                rpc.method
            );
        }
    }
}
