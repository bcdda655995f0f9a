//! Compressed answers for the `proxy` mutation. The mutation hands back the provider's body as
//! text or parsed JSON, so when its caller names no `Accept-Encoding` it asks for gzip and
//! decodes the answer itself: a provider may compress whatever it is asked (RFC 9110 §12.5.3:
//! no `Accept-Encoding` means any coding is acceptable), and the answer crosses the internet
//! smaller. A caller that names an encoding gets the bytes as the provider sent them. The raw
//! route never touches encodings: its caller reads the provider's answer as sent.

use std::io::Read;

use reqwest::header::{CONTENT_ENCODING, HeaderMap, HeaderValue};

use crate::error::{Error, Result};

/// What the mutation asks for when its caller did not say.
pub const ASKED: HeaderValue = HeaderValue::from_static("gzip");

/// Compressed answers up to this size are decoded on the worker; larger ones on a blocking
/// thread, so a large answer does not hold up the other calls of its worker.
const INLINE_BYTES: usize = 32 * 1024;

/// Whether the answer is gzip as a whole: one coding, `gzip` (or its old name `x-gzip`).
pub fn is_gzip(headers: &HeaderMap) -> bool {
    let mut codings = headers.get_all(CONTENT_ENCODING).iter();
    match (codings.next(), codings.next()) {
        (Some(coding), None) => coding.to_str().is_ok_and(|c| {
            let c = c.trim();
            c.eq_ignore_ascii_case("gzip") || c.eq_ignore_ascii_case("x-gzip")
        }),
        _ => false,
    }
}

/// The decoded body, refused past `max` bytes: a small answer can inflate to any size.
pub async fn gunzip(body: bytes::Bytes, max: u64) -> Result<bytes::Bytes> {
    if body.len() <= INLINE_BYTES {
        return gunzip_now(&body, max);
    }
    tokio::task::spawn_blocking(move || gunzip_now(&body, max))
        .await
        .map_err(Error::internal)?
}

fn gunzip_now(body: &[u8], max: u64) -> Result<bytes::Bytes> {
    let mut decoded = Vec::with_capacity(body.len().saturating_mul(4).min(max as usize));
    flate2::read::MultiGzDecoder::new(body)
        .take(max.saturating_add(1))
        .read_to_end(&mut decoded)
        .map_err(|_| Error::Upstream("the provider's gzip answer does not decode".into()))?;
    if decoded.len() as u64 > max {
        return Err(Error::Upstream(format!(
            "the provider's answer is larger than {max} bytes once decoded"
        )));
    }
    Ok(decoded.into())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn headers(codings: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for coding in codings {
            headers.append(CONTENT_ENCODING, HeaderValue::from_str(coding).unwrap());
        }
        headers
    }

    #[test]
    fn only_a_single_gzip_coding_is_decoded() {
        assert!(is_gzip(&headers(&["gzip"])));
        assert!(is_gzip(&headers(&[" GZIP "])));
        assert!(is_gzip(&headers(&["x-gzip"])));
        assert!(!is_gzip(&headers(&[])));
        assert!(!is_gzip(&headers(&["br"])));
        assert!(!is_gzip(&headers(&["deflate, gzip"])));
        assert!(!is_gzip(&headers(&["gzip", "gzip"])));
    }

    #[tokio::test]
    async fn decodes_within_the_limit_and_refuses_past_it() {
        let json = br#"{"data":[1,2,3]}"#;
        let decoded = gunzip(gzip(json).into(), 1024).await.unwrap();
        assert_eq!(&decoded[..], json);
        // Exactly at the limit is fine; one byte past is not.
        let zeros = vec![0_u8; 100_000];
        assert_eq!(
            gunzip(gzip(&zeros).into(), 100_000).await.unwrap().len(),
            100_000
        );
        assert!(matches!(
            gunzip(gzip(&zeros).into(), 99_999).await,
            Err(Error::Upstream(_))
        ));
        // Large enough to be decoded off the worker.
        let big: Vec<u8> = (0..400_000_u32).flat_map(|i| i.to_le_bytes()).collect();
        let compressed = gzip(&big);
        assert!(compressed.len() > INLINE_BYTES);
        assert_eq!(gunzip(compressed.into(), 2_000_000).await.unwrap(), big);
        assert!(matches!(
            gunzip(bytes::Bytes::from_static(b"not gzip at all"), 1024).await,
            Err(Error::Upstream(_))
        ));
    }
}
