//! `keyway keys …`: rotate the data key, finish re-encryption, show where values stand.

use crate::config::Config;
use crate::error::Error;
use crate::service::keys::KeyStore;

pub async fn rotate(config: Config) -> anyhow::Result<()> {
    let (db, keys) = open(&config).await?;
    let id = keys.rotate(&db).await?;
    println!("data key {id} is current; new writes use it now");
    reencrypt_all(&db, &keys).await
}

pub async fn reencrypt(config: Config) -> anyhow::Result<()> {
    let (db, keys) = open(&config).await?;
    reencrypt_all(&db, &keys).await
}

pub async fn status(config: Config) -> anyhow::Result<()> {
    let (db, keys) = open(&config).await?;
    let ring = keys.ring();
    let current = ring.current_key_id() as i32;
    println!("current data key: {current}");
    println!("data keys: {:?}", ring.key_ids().collect::<Vec<_>>());
    let usage = keys.status(&db).await.map_err(Error::into_anyhow)?;
    let mut old = 0;
    for row in &usage {
        let key = row.key_id.map_or("?".to_owned(), |k| k.to_string());
        println!(
            "{:<28} key {:>3}: {:>8} value(s)",
            row.column, key, row.count
        );
        if row.key_id != Some(current) {
            old += row.count;
        }
    }
    if old == 0 {
        println!("re-encryption: complete");
    } else {
        println!("re-encryption: {old} value(s) still under older keys");
    }
    Ok(())
}

async fn reencrypt_all(db: &sea_orm::DatabaseConnection, keys: &KeyStore) -> anyhow::Result<()> {
    let mut total = 0;
    loop {
        let moved = keys
            .reencrypt_batch(db, crate::service::keys::REENCRYPT_BATCH)
            .await
            .map_err(Error::into_anyhow)?;
        if moved == 0 {
            break;
        }
        total += moved;
        eprintln!("re-encrypted {total} value(s)…");
    }
    println!("re-encryption complete ({total} value(s) moved)");
    Ok(())
}

async fn open(config: &Config) -> anyhow::Result<(sea_orm::DatabaseConnection, KeyStore)> {
    let master = crate::crypto::master::load(config)?;
    let db = super::open(config).await?;
    let keys = KeyStore::open(&db, master).await?;
    Ok((db, keys))
}
