//! Micro-benchmark: sealing and opening a credential (AES-256-GCM with row binding), the cost
//! every credential read and write pays. `cargo bench --bench crypto`

use criterion::{Criterion, criterion_group, criterion_main};
use keyway::crypto::{Binding, KeyBytes, Keyring};
use std::hint::black_box;
use uuid::Uuid;

fn seal_and_open(c: &mut Criterion) {
    let ring = Keyring::new(1, [(1, KeyBytes::generate())]).expect("keyring");
    let binding = Binding {
        table: "connections.credentials",
        row_id: Uuid::now_v7(),
        application_id: Uuid::now_v7(),
    };
    // A typical OAuth credential: tokens plus a little bookkeeping, about 600 bytes.
    let plaintext = serde_json::to_vec(&serde_json::json!({
        "kind": "oauth2",
        "access_token": "ya29.".to_owned() + &"a".repeat(250),
        "refresh_token": "1//".to_owned() + &"r".repeat(100),
        "token_type": "Bearer",
        "expires_at": "2030-01-01T00:00:00Z",
        "scopes": ["openid", "email", "profile", "https://www.googleapis.com/auth/drive"],
    }))
    .expect("json");
    let sealed = ring.seal(&plaintext, binding).expect("seal");

    c.bench_function("seal 600 B credential", |b| {
        b.iter(|| ring.seal(black_box(&plaintext), black_box(binding)))
    });
    c.bench_function("open 600 B credential", |b| {
        b.iter(|| ring.open(black_box(&sealed), black_box(binding)))
    });
    c.bench_function("seal + open 600 B credential", |b| {
        b.iter(|| {
            let sealed = ring.seal(black_box(&plaintext), binding).expect("seal");
            ring.open(&sealed, binding).expect("open")
        })
    });
}

criterion_group!(benches, seal_and_open);
criterion_main!(benches);
