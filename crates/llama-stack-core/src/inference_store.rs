//! [`InferenceStore`]: where the inference router records chat completions, so that
//! `GET /v1/chat/completions` and `GET /v1/chat/completions/{id}` can list and return them
//! (Llama Stack's inference store, `storage.stores.inference`).
//!
//! The router records a completion after it was returned in full (non-streaming) or after
//! the last chunk of a stream was delivered (the assembled completion; a stream that fails
//! or that the caller drops is not recorded). A request with `"store": false` is not
//! recorded. Records belong to the caller and are read back through the access policy.

use async_trait::async_trait;

use crate::api::inference::{
    ChatCompletion, ChatCompletionList, ListChatCompletionsRequest, Message, StoredChatCompletion,
};
use crate::context::RequestContext;
use crate::error::Result;

/// Stored chat completions, owned by the caller who created them.
#[async_trait]
pub trait InferenceStore: Send + Sync {
    /// Records `completion` (its `model` is the id the client asked for) with the messages
    /// it answered. May return before the write is durable; later reads by this process
    /// see it.
    async fn store(
        &self,
        ctx: &RequestContext,
        completion: ChatCompletion,
        input_messages: Vec<Message>,
    ) -> Result<()>;

    /// A page of the completions the caller may read.
    async fn list(
        &self,
        ctx: &RequestContext,
        req: &ListChatCompletionsRequest,
    ) -> Result<ChatCompletionList>;

    /// One completion the caller may read; `NotFound` otherwise.
    async fn get(&self, ctx: &RequestContext, completion_id: &str) -> Result<StoredChatCompletion>;
}
