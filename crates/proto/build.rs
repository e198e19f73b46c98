//! Compiles the `TikTokMall` `.proto` contract with `protox` (no `protoc` needed) and generates
//! prost messages plus tonic clients and servers with `tonic-prost-build`.

use std::env;
use std::error::Error;
use std::path::PathBuf;

/// The proto files of the API contract, relative to the proto root.
const PROTOS: [&str; 9] = [
    "tiktokmall/common/v1/common.proto",
    "tiktokmall/auth/v1/auth.proto",
    "tiktokmall/user/v1/user.proto",
    "tiktokmall/product/v1/product.proto",
    "tiktokmall/cart/v1/cart.proto",
    "tiktokmall/order/v1/order.proto",
    "tiktokmall/payment/v1/payment.proto",
    "tiktokmall/checkout/v1/checkout.proto",
    "tiktokmall/events/v1/events.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    println!("cargo:rerun-if-changed={}", proto_root.display());
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| proto_root.join(p)).collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [&proto_root])?;
    std::fs::write(
        out_dir.join("tiktokmall_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
