//! Outbound calls, shared by everything that calls out (workflow steps, callbacks, sends, OCR):
//! where a request may go (`Policy`, checked when a URL is saved and again by `fetch_text`
//! before every call), one request with a deadline, and the backoff between attempts.
//!
//! The policy: `https` only; no credentials in the URL; no IP literal (in any spelling the URL
//! standard accepts: `2130706433`, `0x7f.1`, `127.1`, `[::ffff:127.0.0.1]`, …) that is loopback,
//! private, link-local, CGNAT, unspecified, multicast, reserved or a cloud metadata address; no
//! `localhost` names; not the deployment's own host (`API_BASE_URL`). A `host:port` listed in
//! `EGRESS_ALLOW` is exempt from all of that and may also be reached over plain `http` (the
//! local mocks in development; empty in production). Workers cannot resolve DNS, so a public
//! name that resolves to a private address is beyond this check.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use futures_util::future::{select, Either};
use worker::url::Host;
use worker::{AbortController, Delay, Fetch, Request, Url};

/// Where outbound requests may go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// `EGRESS_ALLOW`: normalised host and port.
    allow: Vec<(String, u16)>,
    /// The deployment's own host names (from `API_BASE_URL`, and at save time the request's).
    own_hosts: Vec<String>,
}

/// A URL's host as the policy compares it: the URL standard's serialisation (IPv4 dotted,
/// IPv6 in brackets, names lower-case and IDNA-mapped) without a trailing dot.
fn host_key(url: &Url) -> Option<String> {
    let h = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    (!h.is_empty()).then_some(h)
}

impl Policy {
    /// `allow` is `EGRESS_ALLOW` (comma-separated `host:port`); `api_base_url` is
    /// `API_BASE_URL`. A malformed entry is an error (a configuration mistake, not a request's).
    pub fn new(allow: &str, api_base_url: Option<&str>) -> Result<Policy, String> {
        let mut policy = Policy::default();
        for entry in allow.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || format!("EGRESS_ALLOW: `{entry}` is not a host:port");
            let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            let url = Url::parse(&format!("http://{host}/")).map_err(|_| bad())?;
            if !url.username().is_empty() || url.password().is_some() || url.path() != "/" {
                return Err(bad());
            }
            policy.allow.push((host_key(&url).ok_or_else(bad)?, port));
        }
        if let Some(base) = api_base_url.map(str::trim).filter(|b| !b.is_empty()) {
            let url =
                Url::parse(base).map_err(|_| format!("API_BASE_URL: `{base}` is not a URL"))?;
            policy.own_hosts.extend(host_key(&url));
        }
        Ok(policy)
    }

    /// The same policy, also refusing the host of `url` (the origin a request to the API came
    /// in on, which names the deployment too).
    pub fn with_own_url(&self, url: &str) -> Policy {
        let mut p = self.clone();
        if let Ok(url) = Url::parse(url) {
            p.own_hosts.extend(host_key(&url));
        }
        p
    }

    /// Parses `url` and checks it; the message says why it is refused.
    pub fn check_str(&self, url: &str) -> Result<Url, String> {
        let parsed = Url::parse(url.trim()).map_err(|e| format!("is not a valid URL ({e})"))?;
        self.check(&parsed)?;
        Ok(parsed)
    }

    /// Whether a request to `url` may be sent.
    pub fn check(&self, url: &Url) -> Result<(), String> {
        let scheme = url.scheme();
        if scheme != "https" && scheme != "http" {
            return Err("must be an https:// URL".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "may not carry credentials (user:password@); use headers and the secret store"
                    .into(),
            );
        }
        let (Some(host), Some(key)) = (url.host(), host_key(url)) else {
            return Err("must name a host".into());
        };
        let port = url.port_or_known_default().unwrap_or(0);
        if self.allow.iter().any(|(h, p)| *h == key && *p == port) {
            return Ok(());
        }
        if scheme != "https" {
            return Err(format!(
                "must use https:// (plain http:// only reaches destinations listed in EGRESS_ALLOW, and {key}:{port} is not)"
            ));
        }
        let internal = match host {
            Host::Domain(_) => key == "localhost" || key.ends_with(".localhost"),
            Host::Ipv4(a) => !public_v4(a),
            Host::Ipv6(a) => !public_v6(a),
        };
        if internal {
            return Err(format!(
                "may not point at {key}: loopback, private, link-local, metadata and other internal addresses are refused"
            ));
        }
        if self.own_hosts.contains(&key) {
            return Err(format!("may not point at this deployment ({key})"));
        }
        Ok(())
    }
}

/// Whether an IPv4 address is globally reachable (not loopback, private, link-local and
/// metadata 169.254/16, CGNAT 100.64/10, "this network" 0/8, IETF 192.0.0/24 (Oracle's
/// metadata 192.0.0.192), documentation, benchmarking 198.18/15, 6to4 relays, multicast,
/// reserved or broadcast).
pub fn public_v4(a: Ipv4Addr) -> bool {
    let [o0, o1, o2, _] = a.octets();
    !(o0 == 0
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || (o0 == 100 && (o1 & 0xc0) == 64)
        || (o0 == 192 && o1 == 0 && o2 == 0)
        || a.is_documentation()
        || (o0 == 198 && (o1 & 0xfe) == 18)
        || (o0 == 192 && o1 == 88 && o2 == 99)
        || o0 >= 224)
}

/// Whether an IPv6 address is globally reachable; addresses that embed an IPv4 one
/// (mapped, compatible, translated, NAT64, 6to4) are judged by it.
pub fn public_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff) {
        // ::a.b.c.d (also :: and ::1) and ::ffff:a.b.c.d
        return public_v4(embedded(s[6], s[7]));
    }
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        // ::ffff:0:a.b.c.d (IPv4-translated)
        return public_v4(embedded(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64
        return public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        // 6to4
        return public_v4(embedded(s[1], s[2]));
    }
    !((s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7 (AWS metadata fd00:ec2::254)
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
        || (s[0] == 0x64 && s[1] == 0xff9b) // local-use NAT64 64:ff9b:1::/48
        || s[..4] == [0x100, 0, 0, 0]) // discard-only
}

/// Seconds before retry `attempt + 1` of a failed call: 2, 4, 8, …
pub fn backoff_secs(attempt: i64) -> u32 {
    2u32.saturating_pow(attempt.clamp(1, 10) as u32)
}

/// How a call that hit its deadline is reported (`timed_out` recognises it).
const TIMED_OUT: &str = "no answer within";

/// Whether a `fetch_text`/`fetch_bytes` error is its deadline passing.
pub fn timed_out(error: &str) -> bool {
    error.starts_with(TIMED_OUT)
}

/// Sends a request and reads its body as text, giving up after `timeout`. The destination is
/// checked against `policy` first (a refusal is an `Err` saying why), and redirects are not
/// followed (a 3xx is the answer), so a call never ends up somewhere the policy was not asked
/// about, and a secret in a header never travels to another host.
pub async fn fetch_text(
    policy: &Policy,
    request: Request,
    timeout: Duration,
) -> std::result::Result<(u16, String), String> {
    fetch_text_with_header(policy, request, timeout, None)
        .await
        .map(|(status, _, text)| (status, text))
}

/// `fetch_text` that also reads one header of the answer (`Retry-After` of a push service).
pub async fn fetch_text_with_header(
    policy: &Policy,
    request: Request,
    timeout: Duration,
    header: Option<&str>,
) -> std::result::Result<(u16, Option<String>, String), String> {
    let request = guarded(policy, request)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async move {
        let mut resp = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|e| e.to_string())?;
        let value = header.and_then(|h| resp.headers().get(h).ok().flatten());
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((resp.status_code(), value, text))
    };
    let call = std::pin::pin!(call);
    let timer = std::pin::pin!(Delay::from(timeout));
    match select(call, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => {
            controller.abort();
            Err(format!("{TIMED_OUT} {} s", timeout.as_secs()))
        }
    }
}

/// The request as it may be sent: its URL passed `policy`, and redirects are not followed.
fn guarded(policy: &Policy, request: Request) -> std::result::Result<Request, String> {
    let url = request.url().map_err(|e| e.to_string())?;
    policy
        .check(&url)
        .map_err(|why| format!("refused by the egress policy: the URL {why}"))?;
    let init = web_sys::RequestInit::new();
    init.set_redirect(web_sys::RequestRedirect::Manual);
    Ok(
        web_sys::Request::new_with_request_and_init(request.inner(), &init)
            .map_err(|e| format!("{e:?}"))?
            .into(),
    )
}

/// `fetch_text` for binary answers (inbound media): the status, the `Content-Type` and the
/// bytes, refused beyond `max_bytes` (by `Content-Length` when given, else once read). The
/// same policy and no redirects.
pub async fn fetch_bytes(
    policy: &Policy,
    request: Request,
    timeout: Duration,
    max_bytes: u64,
) -> std::result::Result<(u16, String, Vec<u8>), String> {
    let request = guarded(policy, request)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async move {
        let mut resp = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|e| e.to_string())?;
        let headers = resp.headers();
        let content_type = headers
            .get("Content-Type")
            .ok()
            .flatten()
            .unwrap_or_default();
        let length = headers
            .get("Content-Length")
            .ok()
            .flatten()
            .and_then(|l| l.parse::<u64>().ok());
        if length.is_some_and(|l| l > max_bytes) {
            return Err(format!("the file is larger than {max_bytes} bytes"));
        }
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        if bytes.len() as u64 > max_bytes {
            return Err(format!("the file is larger than {max_bytes} bytes"));
        }
        Ok::<_, String>((resp.status_code(), content_type, bytes))
    };
    let call = std::pin::pin!(call);
    let timer = std::pin::pin!(Delay::from(timeout));
    match select(call, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => {
            controller.abort();
            Err(format!("{TIMED_OUT} {} s", timeout.as_secs()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::new(
            " 127.0.0.1:8790, [::1]:9000,mock.localhost:80 ",
            Some("https://api.tenantry.example/"),
        )
        .unwrap()
    }

    fn refused(url: &str) -> bool {
        policy().check_str(url).is_err()
    }

    #[test]
    fn public_https_urls_pass() {
        for url in [
            "https://api.example.com/v1/images",
            "https://api.example.com:8443/x?y=1",
            "https://8.8.8.8/",
            "https://[2606:4700:4700::1111]/",
            "https://100.128.0.1/",
            "https://172.32.0.1/",
            "https://localhost.example.com/",
            "https://xn--bcher-kva.example/",
        ] {
            assert_eq!(policy().check_str(url).map(|_| ()), Ok(()), "{url}");
        }
    }

    #[test]
    fn only_https_and_no_credentials() {
        for url in [
            "http://api.example.com/",
            "ftp://api.example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "data:text/plain,hi",
            "ws://api.example.com/",
            "https://user:pass@api.example.com/",
            "https://user@api.example.com/",
            "https://:pass@api.example.com/",
            "http://user:pass@127.0.0.1:8790/",
            "not a url",
            "https://",
        ] {
            assert!(refused(url), "{url} should be refused");
        }
        let why = policy()
            .check_str("https://a:b@api.example.com/")
            .unwrap_err();
        assert!(why.contains("credentials"), "{why}");
        let why = policy().check_str("http://api.example.com/").unwrap_err();
        assert!(why.contains("https://"), "{why}");
    }

    #[test]
    fn internal_ipv4_literals_are_refused_in_every_spelling() {
        for url in [
            "https://127.0.0.1/",
            "https://127.0.0.1:8791/",
            "https://127.1/",
            "https://127.0.1/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://0x7f.1/",
            "https://0x7F.0x0.0x0.0x1/",
            "https://0177.0.0.1/",
            "https://017700000001/",
            "https://127.000.000.001/",
            "https://127.0.0.1./",
            "https://%31%32%37.0.0.1/",
            "https://\u{ff11}\u{ff12}\u{ff17}.0.0.1/",
            "https://0/",
            "https://0.0.0.0/",
            "https://10.0.0.1/",
            "https://10.255.255.255/",
            "https://172.16.0.1/",
            "https://172.31.255.254/",
            "https://192.168.1.1/",
            "https://3232235777/",
            "https://169.254.169.254/latest/meta-data/",
            "https://169.254.0.1/",
            "https://0xa9fea9fe/",
            "https://2852039166/",
            "https://100.64.0.1/",
            "https://100.127.255.255/",
            "https://100.100.100.200/",
            "https://192.0.0.192/",
            "https://198.18.0.1/",
            "https://192.0.2.1/",
            "https://224.0.0.1/",
            "https://240.0.0.1/",
            "https://255.255.255.255/",
        ] {
            assert!(refused(url), "{url} should be refused");
        }
    }

    #[test]
    fn internal_ipv6_literals_are_refused() {
        for url in [
            "https://[::1]/",
            "https://[0:0:0:0:0:0:0:1]/",
            "https://[::]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:7f00:1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[::127.0.0.1]/",
            "https://[::ffff:0:127.0.0.1]/",
            "https://[64:ff9b::127.0.0.1]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[2002:7f00:1::]/",
            "https://[fd00:ec2::254]/",
            "https://[fc00::1]/",
            "https://[fe80::1]/",
            "https://[fe80::1%25eth0]/",
            "https://[fec0::1]/",
            "https://[ff02::1]/",
            "https://[2001:db8::1]/",
        ] {
            assert!(refused(url), "{url} should be refused");
        }
        assert!(!refused("https://[2606:4700::1]/"));
        assert!(!refused("https://[::ffff:8.8.8.8]/"));
    }

    #[test]
    fn localhost_names_and_the_deployment_itself_are_refused() {
        for url in [
            "https://localhost/",
            "https://LOCALHOST:8787/",
            "https://localhost./",
            "https://api.localhost/",
            "https://a.b.localhost/x",
            "https://api.tenantry.example/api/v1/health",
            "https://API.Tenantry.Example./x",
            "https://api.tenantry.example:8443/",
        ] {
            assert!(refused(url), "{url} should be refused");
        }
        let why = policy()
            .check_str("https://api.tenantry.example/")
            .unwrap_err();
        assert!(why.contains("this deployment"), "{why}");
        let at_save = Policy::default().with_own_url("https://tenantry.workers.dev");
        assert!(at_save.check_str("https://tenantry.workers.dev/").is_err());
        assert!(at_save.check_str("https://other.workers.dev/").is_ok());
    }

    #[test]
    fn listed_destinations_pass_even_over_http_but_only_on_their_port() {
        let p = policy();
        for url in [
            "http://127.0.0.1:8790/echo/x",
            "https://127.0.0.1:8790/",
            "http://2130706433:8790/",
            "http://[::1]:9000/",
            "http://mock.localhost/",
        ] {
            assert_eq!(p.check_str(url).map(|_| ()), Ok(()), "{url}");
        }
        for url in [
            "http://127.0.0.1:8791/",
            "http://127.0.0.1/",
            "http://localhost:8790/",
            "http://[::1]:8790/",
            "http://user:pw@127.0.0.1:8790/",
            "ftp://127.0.0.1:8790/",
        ] {
            assert!(p.check_str(url).is_err(), "{url} should be refused");
        }
        // Nothing listed (production): every internal address is refused.
        assert!(Policy::new("", None)
            .unwrap()
            .check_str("http://127.0.0.1:8790/")
            .is_err());
    }

    #[test]
    fn malformed_configuration_is_an_error() {
        for bad in ["127.0.0.1", "127.0.0.1:x", "host:99999", "a/b:80", "u@h:80"] {
            assert!(Policy::new(bad, None).is_err(), "{bad}");
        }
        assert!(Policy::new("", Some("not a url")).is_err());
        assert_eq!(Policy::new(" , ", None), Ok(Policy::default()));
    }

    #[test]
    fn backoff_doubles_from_two_seconds_and_stops_growing() {
        assert_eq!(
            (backoff_secs(1), backoff_secs(2), backoff_secs(3)),
            (2, 4, 8)
        );
        assert_eq!(backoff_secs(0), 2);
        assert_eq!(backoff_secs(50), backoff_secs(10));
    }
}
