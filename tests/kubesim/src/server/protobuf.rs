//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
//! for the few built-in kinds kubectl's typed clients write (`kubectl create secret`,
//! `create configmap`, `create namespace`, `create serviceaccount`, `auth can-i`): the `k8s\0`
//! envelope, `runtime.Unknown`, and per-kind field tables from the Kubernetes
//! `generated.proto` files, turned into the JSON object the rest of the server handles.
//! Other kinds sent as protobuf get 415, like a server that does not speak it.

use base64::Engine;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bool,
    Int,
    Time,
    Msg(&'static [Field]),
    MapStrStr,
    MapStrBytes,
    RepStr,
    RepMsg(&'static [Field]),
}

#[derive(Clone, Copy)]
struct Field {
    num: u64,
    name: &'static str,
    ty: Ty,
}

const fn f(num: u64, name: &'static str, ty: Ty) -> Field {
    Field { num, name, ty }
}

const OWNER_REF: &[Field] = &[
    f(5, "apiVersion", Ty::Str),
    f(1, "kind", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "uid", Ty::Str),
    f(6, "controller", Ty::Bool),
    f(7, "blockOwnerDeletion", Ty::Bool),
];
/// Field 1 of every top-level object.
const METADATA: Field = f(1, "metadata", Ty::Msg(OBJECT_META));
const OBJECT_META: &[Field] = &[
    f(1, "name", Ty::Str),
    f(2, "generateName", Ty::Str),
    f(3, "namespace", Ty::Str),
    f(5, "uid", Ty::Str),
    f(6, "resourceVersion", Ty::Str),
    f(7, "generation", Ty::Int),
    f(8, "creationTimestamp", Ty::Time),
    f(11, "labels", Ty::MapStrStr),
    f(12, "annotations", Ty::MapStrStr),
    f(13, "ownerReferences", Ty::RepMsg(OWNER_REF)),
    f(14, "finalizers", Ty::RepStr),
];
const SECRET: &[Field] = &[
    METADATA,
    f(2, "data", Ty::MapStrBytes),
    f(3, "type", Ty::Str),
    f(4, "stringData", Ty::MapStrStr),
    f(5, "immutable", Ty::Bool),
];
const CONFIG_MAP: &[Field] = &[
    METADATA,
    f(2, "data", Ty::MapStrStr),
    f(3, "binaryData", Ty::MapStrBytes),
    f(4, "immutable", Ty::Bool),
];
const NAMESPACE_SPEC: &[Field] = &[f(1, "finalizers", Ty::RepStr)];
const NAMESPACE: &[Field] = &[METADATA, f(2, "spec", Ty::Msg(NAMESPACE_SPEC))];
const LOCAL_REF: &[Field] = &[f(1, "name", Ty::Str)];
const OBJECT_REF: &[Field] = &[
    f(1, "kind", Ty::Str),
    f(2, "namespace", Ty::Str),
    f(3, "name", Ty::Str),
    f(4, "uid", Ty::Str),
    f(5, "apiVersion", Ty::Str),
];
const SERVICE_ACCOUNT: &[Field] = &[
    METADATA,
    f(2, "secrets", Ty::RepMsg(OBJECT_REF)),
    f(3, "imagePullSecrets", Ty::RepMsg(LOCAL_REF)),
    f(4, "automountServiceAccountToken", Ty::Bool),
];
const RESOURCE_ATTRIBUTES: &[Field] = &[
    f(1, "namespace", Ty::Str),
    f(2, "verb", Ty::Str),
    f(3, "group", Ty::Str),
    f(4, "version", Ty::Str),
    f(5, "resource", Ty::Str),
    f(6, "subresource", Ty::Str),
    f(7, "name", Ty::Str),
];
const NON_RESOURCE_ATTRIBUTES: &[Field] = &[f(1, "path", Ty::Str), f(2, "verb", Ty::Str)];
const SELF_REVIEW_SPEC: &[Field] = &[
    f(1, "resourceAttributes", Ty::Msg(RESOURCE_ATTRIBUTES)),
    f(2, "nonResourceAttributes", Ty::Msg(NON_RESOURCE_ATTRIBUTES)),
];
const REVIEW_SPEC: &[Field] = &[
    f(1, "resourceAttributes", Ty::Msg(RESOURCE_ATTRIBUTES)),
    f(2, "nonResourceAttributes", Ty::Msg(NON_RESOURCE_ATTRIBUTES)),
    f(3, "user", Ty::Str),
    f(4, "groups", Ty::RepStr),
    f(6, "uid", Ty::Str),
];
const SELF_REVIEW: &[Field] = &[METADATA, f(2, "spec", Ty::Msg(SELF_REVIEW_SPEC))];
const REVIEW: &[Field] = &[METADATA, f(2, "spec", Ty::Msg(REVIEW_SPEC))];
const TYPE_META: &[Field] = &[f(1, "apiVersion", Ty::Str), f(2, "kind", Ty::Str)];

fn bad(msg: &str) -> ApiError {
    ApiError::bad_request(format!("error decoding protobuf body: {msg}"))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> ApiResult<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| bad("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }

    fn bytes(&mut self) -> ApiResult<&'a [u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| bad("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Next (field number, wire type, value): varints as numbers, length-delimited as bytes.
    fn next(&mut self) -> ApiResult<Option<(u64, Raw<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let raw = match key & 7 {
            0 => Raw::Varint(self.varint()?),
            2 => Raw::Bytes(self.bytes()?),
            1 => {
                self.pos += 8;
                Raw::Skip
            }
            5 => {
                self.pos += 4;
                Raw::Skip
            }
            _ => return Err(bad("unsupported wire type")),
        };
        Ok(Some((key >> 3, raw)))
    }
}

enum Raw<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Skip,
}

fn text(b: &[u8]) -> ApiResult<String> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("invalid utf-8"))
}

/// Fields 1 and 2 of a two-field message as bytes (empty when absent): a map entry's key
/// and value, or `runtime.Unknown`'s typeMeta and raw object.
fn pair(b: &[u8]) -> ApiResult<(&[u8], &[u8])> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut first, mut second) = (&[][..], &[][..]);
    while let Some((n, raw)) = r.next()? {
        match (n, raw) {
            (1, Raw::Bytes(x)) => first = x,
            (2, Raw::Bytes(x)) => second = x,
            _ => {}
        }
    }
    Ok((first, second))
}

fn message(b: &[u8], fields: &[Field]) -> ApiResult<Value> {
    let mut out = Map::new();
    let mut r = Reader { buf: b, pos: 0 };
    while let Some((n, raw)) = r.next()? {
        let Some(field) = fields.iter().find(|x| x.num == n) else {
            continue;
        };
        let name = field.name.to_string();
        match (field.ty, raw) {
            (Ty::MapStrStr | Ty::MapStrBytes, Raw::Bytes(x)) => {
                let (k, v) = pair(x)?;
                let v = match field.ty {
                    Ty::MapStrStr => json!(text(v)?),
                    _ => json!(base64::engine::general_purpose::STANDARD.encode(v)),
                };
                out.entry(name).or_insert_with(|| json!({}))[text(k)?] = v;
            }
            (Ty::RepStr | Ty::RepMsg(_), Raw::Bytes(x)) => {
                let item = match field.ty {
                    Ty::RepMsg(sub) => message(x, sub)?,
                    _ => json!(text(x)?),
                };
                if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                    a.push(item);
                }
            }
            (_, raw) => {
                if let Some(v) = singular(field, raw)? {
                    out.insert(name, v);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// The JSON value of a field that occurs once, `None` where JSON omits it.
fn singular(field: &Field, raw: Raw<'_>) -> ApiResult<Option<Value>> {
    Ok(match (field.ty, raw) {
        // Go's encoder writes empty strings that JSON would omit.
        (Ty::Str, Raw::Bytes([])) => None,
        (Ty::Str, Raw::Bytes(x)) => Some(json!(text(x)?)),
        (Ty::Bool, Raw::Varint(v)) => Some(json!(v != 0)),
        (Ty::Int, Raw::Varint(v)) => Some(json!(v as i64)),
        (Ty::Time, Raw::Bytes(x)) => {
            let t = message(x, &[f(1, "seconds", Ty::Int)])?;
            let secs = t.get("seconds").and_then(Value::as_i64).unwrap_or(0);
            Timestamp::from_second(secs)
                .ok()
                .map(|ts| json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
        }
        (Ty::Msg(sub), Raw::Bytes(x)) => Some(message(x, sub)?),
        _ => {
            return Err(bad(&format!(
                "unexpected wire type for field {}",
                field.name
            )));
        }
    })
}

/// Decodes a protobuf-encoded object of a supported kind into its JSON form.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let payload = body
        .strip_prefix(b"k8s\x00")
        .ok_or_else(|| bad("missing k8s envelope"))?;
    // runtime.Unknown: typeMeta = 1, raw = 2 (decoded by hand so `raw` stays bytes).
    let (type_meta, raw) = pair(payload)?;
    let type_meta = message(type_meta, TYPE_META)?;
    let string = |key| type_meta.get(key).and_then(Value::as_str).unwrap_or("");
    let (api_version, kind) = (string("apiVersion"), string("kind"));
    let fields = match (api_version, kind) {
        ("v1", "Secret") => SECRET,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SELF_REVIEW,
        ("authorization.k8s.io/v1", "SubjectAccessReview" | "LocalSubjectAccessReview") => REVIEW,
        _ => {
            return Err(ApiError::unsupported_media_type(&format!(
                "application/vnd.kubernetes.protobuf ({api_version} {kind} is only accepted as JSON)"
            )));
        }
    };
    let mut obj = message(raw, fields)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3 | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_a_secret() {
        let meta = [field(1, b"s1"), field(3, b"ns")].concat();
        let entry = [field(1, b"pw"), field(2, b"secret")].concat();
        let secret = [field(1, &meta), field(2, &entry), field(3, b"Opaque")].concat();
        let tm = [field(1, b"v1"), field(2, b"Secret")].concat();
        let body = [b"k8s\x00".to_vec(), field(1, &tm), field(2, &secret)].concat();
        let v = decode(&body).expect("decode");
        assert_eq!(v["metadata"]["name"], "s1");
        assert_eq!(
            v["data"]["pw"],
            base64::engine::general_purpose::STANDARD.encode("secret")
        );
        assert_eq!(v["kind"], "Secret");
    }
}
