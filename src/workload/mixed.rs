//! A varied span mix, for measuring what compression gets from traffic
//! that looks like a real service's rather than one span repeated: traces
//! of eight spans with random ids, 24 operations of three kinds, paths with
//! item ids, user ids, a few status codes, database statements, durations
//! spread over two orders of magnitude, and an error with an exception
//! event on about one span in twenty.

use crate::record::ids::splitmix;
use crate::record::{Event, KeyValue, Span, SpanKind, Status, StatusCode, Value};

/// Server operations (the span name) and their methods.
const ROUTES: [(&str, &str); 12] = [
    ("GET /api/v1/items/{id}", "GET"),
    ("GET /api/v1/items", "GET"),
    ("POST /api/v1/items", "POST"),
    ("PUT /api/v1/items/{id}", "PUT"),
    ("DELETE /api/v1/items/{id}", "DELETE"),
    ("GET /api/v1/users/{id}", "GET"),
    ("GET /api/v1/users/{id}/orders", "GET"),
    ("POST /api/v1/orders", "POST"),
    ("GET /api/v1/orders/{id}", "GET"),
    ("GET /healthz", "GET"),
    ("POST /api/v1/search", "POST"),
    ("GET /api/v2/catalog/{id}", "GET"),
];

/// Client calls to other services.
const CALLS: [&str; 6] = [
    "inventory.Reserve",
    "pricing.Quote",
    "auth.Check",
    "cache GET",
    "cache SET",
    "payments.Authorize",
];

/// Database statements.
const STATEMENTS: [&str; 6] = [
    "SELECT * FROM items WHERE id = $1",
    "SELECT id, name, price FROM items ORDER BY updated_at DESC LIMIT 50",
    "INSERT INTO orders (user_id, item_id, qty) VALUES ($1, $2, $3)",
    "UPDATE items SET stock = stock - $1 WHERE id = $2",
    "SELECT * FROM users WHERE id = $1",
    "DELETE FROM carts WHERE user_id = $1 AND expires_at < now()",
];

const HOSTS: [&str; 4] = [
    "api-7f9c4d-x2kq.prod.internal",
    "api-7f9c4d-b81z.prod.internal",
    "api-7f9c4d-m4ww.prod.internal",
    "api-7f9c4d-q0p3.prod.internal",
];

/// Writes `prefix` and `n` in decimal into `buf`; the text.
fn with_number<'b>(buf: &'b mut [u8; 48], prefix: &str, n: u64) -> &'b str {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let p = prefix.len().min(buf.len() - (digits.len() - at));
    buf[..p].copy_from_slice(&prefix.as_bytes()[..p]);
    let end = p + digits.len() - at;
    buf[p..end].copy_from_slice(&digits[at..]);
    std::str::from_utf8(&buf[..end]).unwrap_or("")
}

/// Builds span number `i` of the mix (producer `seed`, ending at
/// `now_ns`) on the stack and hands it to `f`.
pub fn with_mixed_span<R>(seed: u64, i: u64, now_ns: u64, f: impl FnOnce(&Span<'_>) -> R) -> R {
    let r = splitmix(seed ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let trace = i / 8;
    let t1 = splitmix(seed ^ trace.wrapping_mul(0x9E37_79B9));
    let t2 = splitmix(t1);
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&t1.to_le_bytes());
    trace_id[8..].copy_from_slice(&(t2 | 1).to_le_bytes());
    let span_id = (splitmix(r) | 1).to_le_bytes();
    let parent = if i % 8 == 0 {
        [0; 8]
    } else {
        (splitmix(seed ^ (i - 1).wrapping_mul(0x2545_F491_4F6C_DD1D)) | 1).to_le_bytes()
    };
    let item = r % 50_000;
    let user = (r >> 20) % 200_000;
    let duration = 50_000 + (r >> 8) % 50_000_000;
    let failed = (r >> 40) % 20 == 0;
    let mut path_buf = [0u8; 48];
    let mut user_buf = [0u8; 48];
    let mut message_buf = [0u8; 48];
    let status_code = if failed {
        500
    } else if (r >> 45) % 10 == 0 {
        404
    } else {
        200
    };
    let (name, kind, attrs_storage): (&str, SpanKind, [KeyValue<'_>; 5]);
    match i % 8 {
        0 => {
            let (route, method) = ROUTES[(r % ROUTES.len() as u64) as usize];
            name = route;
            kind = SpanKind::Server;
            attrs_storage = [
                KeyValue::new("http.request.method", Value::Str(method)),
                KeyValue::new(
                    "url.path",
                    Value::Str(with_number(&mut path_buf, "/api/v1/items/", item)),
                ),
                KeyValue::new("http.response.status_code", Value::I64(status_code)),
                KeyValue::new(
                    "server.address",
                    Value::Str(HOSTS[((r >> 12) % HOSTS.len() as u64) as usize]),
                ),
                KeyValue::new(
                    "enduser.id",
                    Value::Str(with_number(&mut user_buf, "user-", user)),
                ),
            ];
        }
        1 | 2 | 5 => {
            name = "db.query";
            kind = SpanKind::Client;
            attrs_storage = [
                KeyValue::new("db.system", Value::Str("postgresql")),
                KeyValue::new(
                    "db.statement",
                    Value::Str(STATEMENTS[((r >> 3) % STATEMENTS.len() as u64) as usize]),
                ),
                KeyValue::new("db.name", Value::Str("shop")),
                KeyValue::new("db.rows_affected", Value::I64(((r >> 30) % 100) as i64)),
                KeyValue::new("server.port", Value::I64(5432)),
            ];
        }
        _ => {
            name = CALLS[((r >> 5) % CALLS.len() as u64) as usize];
            kind = if i % 8 == 7 {
                SpanKind::Internal
            } else {
                SpanKind::Client
            };
            attrs_storage = [
                KeyValue::new("rpc.system", Value::Str("grpc")),
                KeyValue::new(
                    "rpc.grpc.status_code",
                    Value::I64(if failed { 14 } else { 0 }),
                ),
                KeyValue::new(
                    "net.peer.name",
                    Value::Str(HOSTS[((r >> 17) % HOSTS.len() as u64) as usize]),
                ),
                KeyValue::new("app.item_id", Value::I64(item as i64)),
                KeyValue::new("app.retry", Value::Bool((r >> 50) % 7 == 0)),
            ];
        }
    }
    let ex_attrs = [
        KeyValue::new("exception.type", Value::Str("TimeoutError")),
        KeyValue::new(
            "exception.message",
            Value::Str(with_number(
                &mut message_buf,
                "deadline exceeded after ms ",
                duration / 1_000_000,
            )),
        ),
    ];
    let events = [Event {
        time_unix_nano: now_ns.saturating_sub(duration / 2),
        name: "exception",
        attributes: &ex_attrs,
        dropped_attributes_count: 0,
    }];
    let span = Span {
        trace_id,
        span_id,
        parent_span_id: parent,
        name,
        kind,
        start_time_unix_nano: now_ns.saturating_sub(duration),
        end_time_unix_nano: now_ns,
        attributes: &attrs_storage,
        events: if failed { &events } else { &[] },
        status: if failed {
            Status {
                code: StatusCode::Error,
                message: "upstream timed out",
            }
        } else {
            Status::default()
        },
        flags: 0x101,
        ..Default::default()
    };
    f(&span)
}
