//! `{setting}` placeholders in provider URLs.

use std::collections::BTreeMap;

/// The placeholder names in a template, in order.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        names.push(&rest[start + 1..start + len]);
        rest = &rest[start + len + 1..];
    }
    names
}

/// Fills every placeholder; a missing value is an error naming it.
pub fn render(template: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = template.to_owned();
    for name in placeholders(template) {
        let value = values
            .get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("setting {name} is not set"))?;
        out = out.replace(&format!("{{{name}}}"), value);
    }
    Ok(out)
}

/// The template, with placeholders filled by a plausible value, is an absolute https URL —
/// or an http one that `allow_insecure` accepts (operator-allowed local hosts).
pub fn check_https(
    template: &str,
    allow_insecure: &dyn Fn(&url::Url) -> bool,
) -> Result<(), String> {
    let sample: BTreeMap<String, String> = placeholders(template)
        .into_iter()
        .map(|name| {
            // A whole-URL placeholder (`{instance_url}`) stands for an https origin.
            let value = if template.starts_with(&format!("{{{name}}}")) {
                "https://example.com".to_owned()
            } else {
                "sample".to_owned()
            };
            (name.to_owned(), value)
        })
        .collect();
    let url = render(template, &sample)?;
    let parsed = url::Url::parse(&url).map_err(|e| format!("{url} is not a URL: {e}"))?;
    if parsed.host_str().is_none() || (parsed.scheme() != "https" && !allow_insecure(&parsed)) {
        return Err(format!("{template} must be an absolute https URL"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_fills_placeholders() {
        let t = "https://{shop}.myshopify.com/admin/{version}";
        assert_eq!(placeholders(t), vec!["shop", "version"]);
        let values = BTreeMap::from([
            ("shop".to_owned(), "acme".to_owned()),
            ("version".to_owned(), "2024-10".to_owned()),
        ]);
        assert_eq!(
            render(t, &values).unwrap(),
            "https://acme.myshopify.com/admin/2024-10"
        );
        assert!(render(t, &BTreeMap::new()).is_err());
        let never = |_: &url::Url| false;
        assert!(check_https("{instance_url}/services", &never).is_ok());
        assert!(check_https("http://example.com", &never).is_err());
        assert!(check_https("http://127.0.0.1:9/x", &|u: &url::Url| u.port() == Some(9)).is_ok());
    }
}
