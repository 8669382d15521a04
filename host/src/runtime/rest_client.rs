//! The operator's API client, counting every request it sends by HTTP method and response
//! code (`rest_client_requests_total`, as controller-runtime's client-go metric). A refused
//! request (401/403) is visible on /metrics on any cluster, which is how the chart tests
//! prove on a real API server that the chart's RBAC refuses the operator nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::metrics::{RequestCounter, RequestLabels};

/// A kube client for `config` whose requests are counted in `requests`.
pub fn counted_client(
    config: kube::Config,
    requests: RequestCounter,
) -> kube::Result<kube::Client> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&CountRequestsLayer { requests })
        .build())
}

struct CountRequestsLayer {
    requests: RequestCounter,
}

impl<S> tower_layer::Layer<S> for CountRequestsLayer {
    type Service = CountRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountRequests {
            inner,
            requests: self.requests.clone(),
        }
    }
}

pub struct CountRequests<S> {
    inner: S,
    requests: RequestCounter,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for CountRequests<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = request.method().as_str().to_owned();
        let requests = self.requests.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            let code = match &response {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "error".to_owned(),
            };
            requests
                .get_or_create(&RequestLabels { method, code })
                .inc();
            response
        })
    }
}
