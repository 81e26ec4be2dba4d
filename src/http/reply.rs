//! What a handler answers: status, headers and a body, turned into a `worker::Response` at the edge.

use serde::Serialize;

use crate::platform::error::Result;

#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Json(Vec<u8>),
    Text(String, &'static str),
    /// A streamed body (an R2 object), answered with this reply's status and headers.
    Stream(std::rc::Rc<std::cell::RefCell<Option<worker::ResponseBody>>>),
    /// A WebSocket upgrade answered by a Durable Object, passed through untouched.
    Upgrade(std::rc::Rc<std::cell::RefCell<Option<worker::Response>>>),
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

/// The list envelope: `{"data": [...], "next_cursor": ...}`.
#[derive(Serialize)]
struct ListEnvelope<'a, T: Serialize> {
    data: &'a [T],
    next_cursor: Option<&'a str>,
}

#[derive(Serialize)]
struct DataEnvelope<'a, T: Serialize> {
    data: &'a T,
}

impl Reply {
    /// `{"data": value}` with the given status.
    pub fn data<T: Serialize>(status: u16, value: &T) -> Result<Reply> {
        Ok(Reply::json_bytes(
            status,
            serde_json::to_vec(&DataEnvelope { data: value })?,
        ))
    }

    pub fn ok<T: Serialize>(value: &T) -> Result<Reply> {
        Reply::data(200, value)
    }

    pub fn created<T: Serialize>(value: &T, location: Option<String>) -> Result<Reply> {
        let reply = Reply::data(201, value)?;
        Ok(match location {
            Some(loc) => reply.with_header("Location", loc),
            None => reply,
        })
    }

    /// 202 for asynchronous work, with the `Location` of the resource to poll.
    pub fn accepted<T: Serialize>(value: &T, location: String) -> Result<Reply> {
        Ok(Reply::data(202, value)?.with_header("Location", location))
    }

    pub fn list<T: Serialize>(items: &[T], next_cursor: Option<&str>) -> Result<Reply> {
        Ok(Reply::json_bytes(
            200,
            serde_json::to_vec(&ListEnvelope {
                data: items,
                next_cursor,
            })?,
        ))
    }

    pub fn upgrade(response: worker::Response) -> Reply {
        Reply {
            status: 101,
            headers: Vec::new(),
            body: Body::Upgrade(std::rc::Rc::new(std::cell::RefCell::new(Some(response)))),
        }
    }

    pub fn stream(status: u16, body: worker::ResponseBody) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Stream(std::rc::Rc::new(std::cell::RefCell::new(Some(body)))),
        }
    }

    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    pub fn json_bytes(status: u16, bytes: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Body::Json(bytes),
        }
    }

    pub fn text(status: u16, text: String, content_type: &'static str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: Body::Text(text, content_type),
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        let name = name.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn into_response(self) -> worker::Result<worker::Response> {
        let response = match self.body {
            Body::Empty => worker::Response::empty()?,
            Body::Json(bytes) => worker::Response::from_bytes(bytes)?,
            Body::Text(text, _) => worker::Response::ok(text)?,
            Body::Stream(body) => {
                let body = body
                    .borrow_mut()
                    .take()
                    .ok_or_else(|| worker::Error::RustError("stream already answered".into()))?;
                worker::Response::from_body(body)?
            }
            Body::Upgrade(response) => {
                return response
                    .borrow_mut()
                    .take()
                    .ok_or_else(|| worker::Error::RustError("upgrade already answered".into()))
            }
        };
        let headers = worker::Headers::new();
        for (name, value) in &self.headers {
            headers.set(name, value)?;
        }
        Ok(response.with_status(self.status).with_headers(headers))
    }
}
