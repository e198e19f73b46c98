//! gRPC-Web: with `server.grpc_web` on, a browser's `application/grpc-web+proto` POST over
//! HTTP/1.1 reaches the same service (and its layers) and gets the answer framed for gRPC-Web,
//! trailers included; CORS answers preflights for the configured origins only. Off (the
//! default), the port speaks HTTP/2 gRPC only. Raw HTTP/1.1 on a TCP socket, as a browser's
//! fetch would send it.

use std::net::SocketAddr;

use mall_proto::product::v1 as pb;
use mall_testing::TestFleet;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATH: &str = "/tiktokmall.product.v1.ProductCatalogService/GetProduct";
const SHOP: &str = "https://shop.example";

/// One HTTP/1.1 exchange (`Connection: close`): the status line and headers (lower-cased),
/// and the body (chunked encoding undone).
async fn exchange(addr: SocketAddr, request: &[u8]) -> (String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut raw),
    )
    .await;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut body = raw[split..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut plain = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            plain.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = plain;
    }
    (head, body)
}

fn get_product(addr: SocketAddr, id: u64, origin: &str) -> Vec<u8> {
    let message = pb::GetProductReq { id }.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    let mut request = format!(
        "POST {PATH} HTTP/1.1\r\nhost: {addr}\r\norigin: {origin}\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\naccept: application/grpc-web+proto\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        frame.len()
    )
    .into_bytes();
    request.extend_from_slice(&frame);
    request
}

/// The frames of a gRPC-Web body: (flags, payload).
fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        out.push((body[0], body[5..5 + len].to_vec()));
        body = &body[5 + len..];
    }
    out
}

#[tokio::test]
async fn a_browser_calls_the_catalog_with_grpc_web() {
    let fleet = TestFleet::start_with(
        &["product"],
        &[
            ("MALL__SERVER__GRPC_WEB", "true"),
            ("MALL__SERVER__CORS_ORIGINS", SHOP),
        ],
    )
    .await;
    let id = fleet.catalog().create_product("web lamp", 1_999, 3).await;
    let addr = fleet.endpoints("product").grpc;

    // The browser's preflight for a cross-origin call.
    let preflight = format!(
        "OPTIONS {PATH} HTTP/1.1\r\nhost: {addr}\r\norigin: {SHOP}\r\n\
         access-control-request-method: POST\r\n\
         access-control-request-headers: content-type,x-grpc-web,authorization\r\n\
         connection: close\r\n\r\n"
    );
    let (head, _) = exchange(addr, preflight.as_bytes()).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("access-control-allow-origin: {SHOP}")),
        "{head}"
    );
    assert!(head.contains("authorization"), "{head}");

    // The call itself: the message frame, then the trailers frame.
    let (head, body) = exchange(addr, &get_product(addr, id, SHOP)).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: application/grpc-web+proto"),
        "{head}"
    );
    assert!(
        head.contains(&format!("access-control-allow-origin: {SHOP}")),
        "{head}"
    );
    assert!(head.contains("access-control-expose-headers"), "{head}");
    let frames = frames(&body);
    assert_eq!(frames.len(), 2, "{body:?}");
    let answer = pb::GetProductResp::decode(frames[0].1.as_slice()).unwrap();
    assert_eq!(answer.product.unwrap().name, "web lamp");
    assert_eq!(frames[1].0, 0x80, "a trailers frame");
    let trailers = String::from_utf8_lossy(&frames[1].1).to_ascii_lowercase();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");

    // A refusal travels the same way; and another origin gets no CORS grant.
    let (head, body) = exchange(addr, &get_product(addr, 424_242, "https://evil.example")).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    let text = String::from_utf8_lossy(&body).to_ascii_lowercase() + &head;
    assert!(
        text.contains("grpc-status: 5") || text.contains("grpc-status:5"),
        "{text}"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn without_grpc_web_the_port_speaks_only_grpc() {
    let fleet = TestFleet::start(&["product"]).await;
    let addr = fleet.endpoints("product").grpc;
    let (head, body) = exchange(addr, &get_product(addr, 1, SHOP)).await;
    assert!(!head.starts_with("http/1.1 200"), "{head}");
    assert!(frames(&body).is_empty());
    // gRPC itself is unaffected.
    fleet.catalog().create_product("still grpc", 100, 1).await;
    fleet.stop().await;
}
