//! Checks the compiled descriptor set against the API contract (`design/API.md`).

use prost::Message;
use prost_types::{
    DescriptorProto, FileDescriptorProto, FileDescriptorSet, field_descriptor_proto::Type,
};

fn fds() -> FileDescriptorSet {
    FileDescriptorSet::decode(mall_proto::FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
}

fn file<'a>(set: &'a FileDescriptorSet, package: &str) -> &'a FileDescriptorProto {
    set.file
        .iter()
        .find(|f| f.package() == package)
        .unwrap_or_else(|| panic!("package {package} missing"))
}

fn message<'a>(set: &'a FileDescriptorSet, package: &str, name: &str) -> &'a DescriptorProto {
    file(set, package)
        .message_type
        .iter()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("message {package}.{name} missing"))
}

/// Asserts the message's fields are exactly `fields`, numbered 1.. in that order.
fn assert_fields(set: &FileDescriptorSet, package: &str, name: &str, fields: &[&str]) {
    let msg = message(set, package, name);
    let got: Vec<(&str, i32)> = msg.field.iter().map(|f| (f.name(), f.number())).collect();
    let want: Vec<(&str, i32)> = fields.iter().copied().zip(1..).collect();
    assert_eq!(got, want, "fields of {package}.{name}");
}

#[test]
fn all_services_and_rpcs_present() {
    let set = fds();
    let expected: [(&str, &str, &[&str]); 7] = [
        (
            "tiktokmall.auth.v1",
            "AuthService",
            &[
                "Register",
                "Login",
                "RefreshToken",
                "Logout",
                "ValidateToken",
                "DeliverToken",
                "GetAccount",
                "UpdateAccount",
                "DeleteAccount",
            ],
        ),
        (
            "tiktokmall.user.v1",
            "UserService",
            &["Register", "Login", "Logout", "Delete", "Update", "Info"],
        ),
        (
            "tiktokmall.product.v1",
            "ProductCatalogService",
            &[
                "ListProducts",
                "GetProduct",
                "SearchProducts",
                "BatchGetProducts",
                "ListCategories",
                "CreateProduct",
                "UpdateProduct",
                "DeleteProduct",
                "ReserveStock",
                "ReleaseStock",
            ],
        ),
        (
            "tiktokmall.cart.v1",
            "CartService",
            &[
                "AddItem",
                "GetCart",
                "EmptyCart",
                "UpdateItem",
                "RemoveItem",
                "RemovePurchased",
            ],
        ),
        (
            "tiktokmall.order.v1",
            "OrderService",
            &[
                "PlaceOrder",
                "ListOrder",
                "GetOrder",
                "MarkOrderPaid",
                "CancelOrder",
            ],
        ),
        (
            "tiktokmall.payment.v1",
            "PaymentService",
            &[
                "Charge",
                "Refund",
                "AlipayCharge",
                "AlipayNotify",
                "VoidOrder",
                "GetPayment",
                // Added for Alipay: the order sweeper's question.
                "QueryOrderPayment",
            ],
        ),
        ("tiktokmall.checkout.v1", "CheckoutService", &["Checkout"]),
    ];

    let mut names = Vec::new();
    for (package, service, rpcs) in expected {
        let svc = file(&set, package)
            .service
            .iter()
            .find(|s| s.name() == service)
            .unwrap_or_else(|| panic!("service {package}.{service} missing"));
        let got: Vec<&str> = svc
            .method
            .iter()
            .map(prost_types::MethodDescriptorProto::name)
            .collect();
        assert_eq!(got, rpcs, "RPCs of {package}.{service}");
        names.push(format!("{package}.{service}"));
    }

    let mut listed: Vec<String> = mall_proto::SERVICE_NAMES
        .iter()
        .map(ToString::to_string)
        .collect();
    listed.sort();
    names.sort();
    assert_eq!(listed, names, "SERVICE_NAMES matches the descriptor set");
    let total_services: usize = set.file.iter().map(|f| f.service.len()).sum();
    assert_eq!(total_services, 7);
}

#[test]
fn response_types_follow_the_contract() {
    let set = fds();
    let output = |package: &str, service: &str, rpc: &str| -> String {
        file(&set, package)
            .service
            .iter()
            .find(|s| s.name() == service)
            .and_then(|s| s.method.iter().find(|m| m.name() == rpc))
            .unwrap_or_else(|| panic!("{package}.{service}/{rpc} missing"))
            .output_type()
            .to_owned()
    };
    let product = "tiktokmall.product.v1";
    let psvc = "ProductCatalogService";
    assert_eq!(
        output(product, psvc, "CreateProduct"),
        ".tiktokmall.product.v1.Product"
    );
    assert_eq!(
        output(product, psvc, "UpdateProduct"),
        ".tiktokmall.product.v1.Product"
    );
    assert_eq!(
        output("tiktokmall.auth.v1", "AuthService", "GetAccount"),
        ".tiktokmall.auth.v1.Account"
    );
    assert_eq!(
        output("tiktokmall.auth.v1", "AuthService", "DeliverToken"),
        ".tiktokmall.auth.v1.DeliveryResp"
    );
    assert_eq!(
        output("tiktokmall.payment.v1", "PaymentService", "GetPayment"),
        ".tiktokmall.payment.v1.Payment"
    );
}

#[test]
fn field_numbers_follow_the_contract_order() {
    let set = fds();
    assert_fields(
        &set,
        "tiktokmall.checkout.v1",
        "CheckoutReq",
        &[
            "user_id",
            "firstname",
            "lastname",
            "email",
            "address",
            "credit_card",
            "idempotency_key",
            // Added for Alipay.
            "payment_method",
            "return_url",
        ],
    );
    assert_fields(
        &set,
        "tiktokmall.order.v1",
        "Order",
        &[
            "order_items",
            "order_id",
            "user_id",
            "user_currency",
            "address",
            "email",
            "created_at",
            "status",
            "total_cents",
            "transaction_id",
            "paid_at",
            // Added for Alipay.
            "payment_method",
        ],
    );
    assert_fields(
        &set,
        "tiktokmall.order.v1",
        "PlaceOrderReq",
        &[
            "user_id",
            "user_currency",
            "address",
            "email",
            "order_items",
            "idempotency_key",
            // Added for Alipay.
            "payment_method",
        ],
    );
    assert_fields(
        &set,
        "tiktokmall.product.v1",
        "Product",
        &[
            "id",
            "name",
            "description",
            "picture",
            "price_cents",
            "stock",
            "categories",
        ],
    );
    assert_fields(
        &set,
        "tiktokmall.payment.v1",
        "Payment",
        &[
            "transaction_id",
            "order_id",
            "user_id",
            "amount_cents",
            "refunded_cents",
            "status",
            "payment_method",
            "card_brand",
            "card_last4",
            "created_at",
        ],
    );
    assert_fields(
        &set,
        "tiktokmall.common.v1",
        "CreditCardInfo",
        &[
            "credit_card_number",
            "credit_card_cvv",
            "credit_card_expiration_year",
            "credit_card_expiration_month",
        ],
    );
    assert_fields(
        &set,
        "tiktokmall.common.v1",
        "CartItem",
        &["product_id", "quantity"],
    );
}

#[test]
fn field_types_follow_the_contract() {
    let set = fds();
    let ty = |package: &str, msg: &str, field: &str| -> (Type, String) {
        let f = message(&set, package, msg)
            .field
            .iter()
            .find(|f| f.name() == field)
            .unwrap_or_else(|| panic!("{package}.{msg}.{field} missing"));
        (f.r#type(), f.type_name().to_owned())
    };
    assert_eq!(
        ty("tiktokmall.order.v1", "Order", "status"),
        (Type::Enum, ".tiktokmall.order.v1.OrderStatus".into())
    );
    assert_eq!(
        ty("tiktokmall.order.v1", "Order", "user_id").0,
        Type::Uint64
    );
    assert_eq!(
        ty("tiktokmall.order.v1", "Order", "order_id").0,
        Type::String
    );
    assert_eq!(
        ty("tiktokmall.order.v1", "Order", "total_cents").0,
        Type::Int64
    );
    assert_eq!(
        ty("tiktokmall.order.v1", "OrderItem", "item"),
        (Type::Message, ".tiktokmall.common.v1.CartItem".into())
    );
    assert_eq!(
        ty("tiktokmall.product.v1", "Product", "stock").0,
        Type::Uint32
    );
    assert_eq!(
        ty("tiktokmall.product.v1", "ListProductsReq", "page").0,
        Type::Int32
    );
    assert_eq!(
        ty("tiktokmall.product.v1", "ListProductsReq", "page_size").0,
        Type::Int64
    );
    assert_eq!(
        ty("tiktokmall.common.v1", "Address", "zip_code").0,
        Type::String
    );
    assert_eq!(
        ty("tiktokmall.common.v1", "CreditCardInfo", "credit_card_cvv").0,
        Type::String
    );

    // OrderStatus values.
    let order = file(&set, "tiktokmall.order.v1");
    let status = order
        .enum_type
        .iter()
        .find(|e| e.name() == "OrderStatus")
        .expect("OrderStatus");
    let values: Vec<(&str, i32)> = status
        .value
        .iter()
        .map(|v| (v.name(), v.number()))
        .collect();
    assert_eq!(
        values,
        [
            ("ORDER_STATUS_UNSPECIFIED", 0),
            ("ORDER_STATUS_PENDING", 1),
            ("ORDER_STATUS_PAID", 2),
            ("ORDER_STATUS_CANCELLED", 3),
            ("ORDER_STATUS_COMPLETED", 4),
            ("ORDER_STATUS_REFUNDED", 5),
        ]
    );
}

#[test]
fn generated_types_are_usable() {
    use mall_proto::common::v1::CartItem;
    use mall_proto::order::v1::{Order, OrderStatus};
    use mall_proto::payment::v1::AlipayNotifyReq;
    use mall_proto::product::v1::ReserveStockReq;

    let req = ReserveStockReq {
        reservation_id: "r1".into(),
        items: vec![CartItem {
            product_id: 7,
            quantity: 2,
        }],
    };
    let decoded = ReserveStockReq::decode(req.encode_to_vec().as_slice()).expect("round trip");
    assert_eq!(decoded, req);

    let order = Order {
        status: OrderStatus::Paid as i32,
        ..Default::default()
    };
    assert_eq!(order.status(), OrderStatus::Paid);
    assert_eq!(OrderStatus::Refunded.as_str_name(), "ORDER_STATUS_REFUNDED");

    let notify = AlipayNotifyReq {
        params: [("k".to_owned(), "v".to_owned())].into_iter().collect(),
    };
    assert_eq!(notify.params.get("k").map(String::as_str), Some("v"));

    // Both module paths name the same generated types.
    let _: mall_proto::tiktokmall::common::v1::CartItem = CartItem::default();
    // Server and client types exist where the docs say they do.
    let _ = std::any::type_name::<
        mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient<
            tonic::transport::Channel,
        >,
    >();
}
