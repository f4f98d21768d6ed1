"""The real ChatGroq and ChatOllama clients against the local protocol servers.

Besides proving the servers speak the protocols, these tests pin down what the real clients
do on each fault, which the LLM-check nodes have to turn into a recorded `hold`:

- HTTP 429 / 500: ChatGroq raises groq.RateLimitError / groq.InternalServerError (with
  max_retries=0, one request); ChatOllama raises ollama.ResponseError with .status_code.
- Reply later than the timeout: groq.APITimeoutError; ChatOllama lets httpx.ReadTimeout through.
- Connection cut mid-body: ChatGroq invoke raises groq.APIConnectionError, but astream lets
  httpx.RemoteProtocolError through unwrapped; ChatOllama raises httpx.RemoteProtocolError.
- Stream ending cleanly without its terminator (no `data: [DONE]` / no `"done": true`): NO
  error from either client; the partial text comes back with usage_metadata None (and no
  finish_reason / done_reason). ChatOllama raises ValueError only when nothing came at all.
- JSON body cut short (Groq invoke) or a non-protocol body: json.JSONDecodeError, unwrapped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import groq
import httpx
import ollama
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.tools import tool
from langchain_groq import ChatGroq
from langchain_ollama import ChatOllama
from llm_servers import (
    Delay,
    Garbage,
    GroqServer,
    HttpError,
    OllamaServer,
    Text,
    ToolCall,
    Truncated,
    split_into_chunks,
)
from pydantic import BaseModel, Field

GROQ_MODEL = "llama-3.1-8b-instant"
OLLAMA_MODEL = "qwen2.5:14b"


class Verdict(BaseModel):
    """An LLM's verdict on an ML entry signal."""

    decision: str = Field(description="BUY or HOLD")
    confidence: float = Field(ge=0, le=1)


@tool
def record_verdict(decision: str, confidence: float) -> str:
    """Record the verdict on the entry signal."""
    return decision


def make_groq(server: GroqServer, **kwargs: object) -> ChatGroq:
    return ChatGroq(
        model=GROQ_MODEL,
        api_key="test",  # type: ignore[arg-type]
        base_url=server.base_url,
        max_retries=0,
        **kwargs,  # type: ignore[arg-type]
    )


def make_ollama(server: OllamaServer, **kwargs: object) -> ChatOllama:
    return ChatOllama(model=OLLAMA_MODEL, base_url=server.base_url, **kwargs)  # type: ignore[arg-type]


def merge_chunks(chunks: Sequence[object]) -> AIMessageChunk:
    """Add streamed chunks up the way LangChain aggregates them."""
    merged = AIMessageChunk(content="")
    for chunk in chunks:
        assert isinstance(chunk, AIMessageChunk)
        merged += chunk
    return merged


# ---------------------------------------------------------------------------------------------
# The servers themselves
# ---------------------------------------------------------------------------------------------


def test_split_into_chunks_splits_by_word_and_joins_back_exactly() -> None:
    content = "Buy  KRW-BTC\nnow, please "

    chunks = split_into_chunks(content)

    assert chunks == ["Buy  ", "KRW-BTC\n", "now, ", "please "]
    assert "".join(chunks) == content


def test_server_starts_on_ephemeral_port_and_stops_cleanly() -> None:
    with GroqServer() as first, GroqServer() as second:
        assert first.base_url.startswith("http://127.0.0.1:")
        assert first.port != second.port
        response = httpx.get(f"{first.base_url}/openai/v1/models")
        assert response.json()["data"][0]["id"] == GROQ_MODEL

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{first.base_url}/openai/v1/models", timeout=1)


async def test_default_factory_answers_from_request_when_script_is_empty(
    groq_server: GroqServer,
) -> None:
    groq_server.default = lambda body: Text(f"echo: {body['messages'][-1]['content']}")
    groq_server.script(Text("scripted"), lambda body: Text(f"model={body['model']}"))
    llm = make_groq(groq_server)

    replies = [(await llm.ainvoke("ping")).content for _ in range(3)]

    assert replies == ["scripted", f"model={GROQ_MODEL}", "echo: ping"]
    assert groq_server.pending == 0
    assert len(groq_server.chat_requests) == 3


async def test_stopping_server_drops_a_pending_delay_without_hanging() -> None:
    server = OllamaServer()
    with server:
        server.script(Delay(30))
        llm = make_ollama(server, client_kwargs={"timeout": 0.1})
        with pytest.raises(httpx.ReadTimeout):
            await llm.ainvoke("hi")
    # leaving the block returned: the 30 s handler was dropped, not awaited
    assert len(server.requests) == 1


# ---------------------------------------------------------------------------------------------
# Groq
# ---------------------------------------------------------------------------------------------


async def test_groq_ainvoke_returns_scripted_content_and_token_usage(
    groq_server: GroqServer,
) -> None:
    groq_server.script(Text("BUY with care", prompt_tokens=42, completion_tokens=7))

    reply = await make_groq(groq_server).ainvoke("Should we buy KRW-BTC?")

    assert reply.content == "BUY with care"
    assert reply.usage_metadata == {"input_tokens": 42, "output_tokens": 7, "total_tokens": 49}
    assert reply.response_metadata["finish_reason"] == "stop"
    [request] = groq_server.requests
    assert (request.method, request.path) == ("POST", "/openai/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer test"
    assert request.json["model"] == GROQ_MODEL
    assert request.json["stream"] is False
    assert request.json["messages"] == [{"role": "user", "content": "Should we buy KRW-BTC?"}]


async def test_groq_astream_yields_several_chunks_that_join_to_content(
    groq_server: GroqServer,
) -> None:
    groq_server.script(Text("HOLD because volume is thin"))

    chunks = [chunk async for chunk in make_groq(groq_server).astream("verdict?")]

    texts = [chunk.content for chunk in chunks if chunk.content]
    assert texts == ["HOLD ", "because ", "volume ", "is ", "thin"]
    merged = merge_chunks(chunks)
    assert merged.content == "HOLD because volume is thin"
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == 5
    assert groq_server.requests[0].json["stream"] is True


async def test_groq_think_is_inline_by_default_and_separate_when_parsed(
    groq_server: GroqServer,
) -> None:
    groq_server.script(Text("BUY", think="RSI is low"), Text("BUY", think="RSI is low"))

    raw = await make_groq(groq_server).ainvoke("verdict?")
    parsed = await make_groq(groq_server, reasoning_format="parsed").ainvoke("verdict?")

    assert raw.content == "<think>\nRSI is low\n</think>\n\nBUY"
    assert parsed.content == "BUY"
    assert parsed.additional_kwargs["reasoning_content"] == "RSI is low"


async def test_groq_tool_call_arguments_are_a_json_string_parsed_by_bind_tools(
    groq_server: GroqServer,
) -> None:
    groq_server.script(ToolCall("record_verdict", {"decision": "BUY", "confidence": 0.8}))

    reply = await make_groq(groq_server).bind_tools([record_verdict]).ainvoke("verdict?")

    assert isinstance(reply, AIMessage)
    assert reply.tool_calls[0]["name"] == "record_verdict"
    assert reply.tool_calls[0]["args"] == {"decision": "BUY", "confidence": 0.8}
    raw_arguments = reply.additional_kwargs["tool_calls"][0]["function"]["arguments"]
    assert json.loads(raw_arguments) == {"decision": "BUY", "confidence": 0.8}
    sent_tools = groq_server.requests[0].json["tools"]
    assert sent_tools[0]["function"]["name"] == "record_verdict"


async def test_groq_streamed_tool_call_is_parsed(groq_server: GroqServer) -> None:
    groq_server.script(ToolCall("record_verdict", {"decision": "HOLD", "confidence": 0.3}))
    llm = make_groq(groq_server).bind_tools([record_verdict])

    chunks = [chunk async for chunk in llm.astream("verdict?")]

    merged = merge_chunks(chunks)
    assert merged.tool_calls[0]["args"] == {"decision": "HOLD", "confidence": 0.3}


async def test_groq_structured_output_by_function_calling_returns_schema_instance(
    groq_server: GroqServer,
) -> None:
    groq_server.script(ToolCall("Verdict", {"decision": "BUY", "confidence": 0.9}))
    llm = make_groq(groq_server).with_structured_output(Verdict, method="function_calling")

    verdict = await llm.ainvoke("verdict?")

    assert verdict == Verdict(decision="BUY", confidence=0.9)
    body = groq_server.requests[0].json
    assert body["tool_choice"]["function"]["name"] == "Verdict"


async def test_groq_response_format_json_schema_passes_through_in_request(
    groq_server: GroqServer,
) -> None:
    groq_server.script(Text(json.dumps({"decision": "HOLD", "confidence": 0.4})))
    llm = make_groq(groq_server).with_structured_output(Verdict, method="json_schema")

    verdict = await llm.ainvoke("verdict?")

    assert verdict == Verdict(decision="HOLD", confidence=0.4)
    response_format = groq_server.requests[0].json["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Verdict"
    assert set(response_format["json_schema"]["schema"]["properties"]) == {
        "decision",
        "confidence",
    }


async def test_groq_429_raises_rate_limit_error_after_exactly_one_request(
    groq_server: GroqServer,
) -> None:
    groq_server.script(HttpError(429, headers={"Retry-After": "1"}))

    with pytest.raises(groq.RateLimitError) as caught:
        await make_groq(groq_server).ainvoke("verdict?")

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "1"
    assert len(groq_server.requests) == 1


async def test_groq_500_raises_internal_server_error(groq_server: GroqServer) -> None:
    groq_server.script(HttpError(500))

    with pytest.raises(groq.InternalServerError):
        await make_groq(groq_server).ainvoke("verdict?")


async def test_groq_reply_later_than_timeout_raises_api_timeout_error(
    groq_server: GroqServer,
) -> None:
    groq_server.script(Delay(5, then=Text("too late")))

    with pytest.raises(groq.APITimeoutError):
        await make_groq(groq_server, timeout=0.2).ainvoke("verdict?")


async def test_groq_wrong_api_key_raises_authentication_error() -> None:
    with GroqServer(api_key="right") as server:
        llm = ChatGroq(
            model=GROQ_MODEL,
            api_key="wrong",  # type: ignore[arg-type]
            base_url=server.base_url,
            max_retries=0,
        )
        with pytest.raises(groq.AuthenticationError):
            await llm.ainvoke("verdict?")


async def test_groq_connection_cut_mid_body_raises_connection_errors(
    groq_server: GroqServer,
) -> None:
    groq_server.script(Truncated("BUY now"), Truncated("BUY now"))
    llm = make_groq(groq_server)

    with pytest.raises(groq.APIConnectionError):
        await llm.ainvoke("verdict?")
    with pytest.raises(httpx.RemoteProtocolError):  # not wrapped by the groq SDK when streaming
        _ = [chunk async for chunk in llm.astream("verdict?")]


async def test_groq_stream_without_done_gives_partial_content_silently(
    groq_server: GroqServer,
) -> None:
    groq_server.script(Truncated("BUY all of", cut_connection=False))

    chunks = [chunk async for chunk in make_groq(groq_server).astream("verdict?")]

    merged = merge_chunks(chunks)
    assert merged.content == "BUY all of"
    assert merged.usage_metadata is None  # the only sign: no usage, no finish_reason
    assert "finish_reason" not in merged.response_metadata


async def test_groq_truncated_or_garbage_json_body_raises_json_decode_error(
    groq_server: GroqServer,
) -> None:
    groq_server.script(Truncated("BUY", cut_connection=False), Garbage(b"<html>502</html>"))
    llm = make_groq(groq_server)

    with pytest.raises(json.JSONDecodeError):
        await llm.ainvoke("verdict?")
    with pytest.raises(json.JSONDecodeError):
        await llm.ainvoke("verdict?")


async def test_groq_models_endpoint_lists_models(groq_server: GroqServer) -> None:
    client = groq.AsyncGroq(api_key="test", base_url=groq_server.base_url, max_retries=0)

    models = await client.models.list()

    assert GROQ_MODEL in [model.id for model in models.data]


async def test_groq_stream_options_include_usage_adds_openai_usage_chunk(
    groq_server: GroqServer,
) -> None:
    client = groq.AsyncGroq(api_key="test", base_url=groq_server.base_url, max_retries=0)
    groq_server.script(Text("BUY now", prompt_tokens=3, completion_tokens=2))

    stream = await client.chat.completions.create(
        model=GROQ_MODEL,
        messages=[{"role": "user", "content": "verdict?"}],
        stream=True,
        extra_body={"stream_options": {"include_usage": True}},  # not a named arg in groq 0.37
    )
    chunks = [chunk async for chunk in stream]

    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-2].x_groq is not None and chunks[-2].x_groq.usage is not None
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5


# ---------------------------------------------------------------------------------------------
# Ollama
# ---------------------------------------------------------------------------------------------


async def test_ollama_ainvoke_returns_scripted_content_and_token_usage(
    ollama_server: OllamaServer,
) -> None:
    ollama_server.script(Text("HOLD for now", prompt_tokens=30, completion_tokens=3))

    reply = await make_ollama(ollama_server).ainvoke("Should we buy KRW-BTC?")

    assert reply.content == "HOLD for now"
    assert reply.usage_metadata == {"input_tokens": 30, "output_tokens": 3, "total_tokens": 33}
    assert reply.response_metadata["done_reason"] == "stop"
    # invoke streams too, and with validate_model_on_init=False nothing but /api/chat is called
    assert [(r.method, r.path) for r in ollama_server.requests] == [("POST", "/api/chat")]
    body = ollama_server.requests[0].json
    assert body["stream"] is True
    assert body["model"] == OLLAMA_MODEL
    assert body["messages"] == [{"role": "user", "content": "Should we buy KRW-BTC?"}]


async def test_ollama_astream_yields_several_chunks_that_join_to_content(
    ollama_server: OllamaServer,
) -> None:
    ollama_server.script(Text("BUY on the breakout"))

    chunks = [chunk async for chunk in make_ollama(ollama_server).astream("verdict?")]

    assert [chunk.content for chunk in chunks if chunk.content] == [
        "BUY ",
        "on ",
        "the ",
        "breakout",
    ]
    merged = merge_chunks(chunks)
    assert merged.content == "BUY on the breakout"
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == 4


async def test_ollama_think_is_inline_by_default_and_separate_with_reasoning(
    ollama_server: OllamaServer,
) -> None:
    ollama_server.script(Text("BUY", think="MACD crossed"), Text("BUY", think="MACD crossed"))

    raw = await make_ollama(ollama_server).ainvoke("verdict?")
    separate = await make_ollama(ollama_server, reasoning=True).ainvoke("verdict?")

    assert raw.content == "<think>\nMACD crossed\n</think>\n\nBUY"
    assert separate.content == "BUY"
    assert separate.additional_kwargs["reasoning_content"] == "MACD crossed"
    assert ollama_server.requests[1].json["think"] is True


async def test_ollama_format_json_schema_arrives_in_request(ollama_server: OllamaServer) -> None:
    schema = Verdict.model_json_schema()
    ollama_server.script(Text('{"decision": "BUY", "confidence": 0.7}'))

    reply = await make_ollama(ollama_server, format=schema).ainvoke("verdict?")

    assert json.loads(str(reply.content)) == {"decision": "BUY", "confidence": 0.7}
    assert ollama_server.requests[0].json["format"] == schema


async def test_ollama_structured_output_sends_schema_as_format(
    ollama_server: OllamaServer,
) -> None:
    ollama_server.script(Text('{"decision": "HOLD", "confidence": 0.2}'))
    llm = make_ollama(ollama_server).with_structured_output(Verdict)

    verdict = await llm.ainvoke("verdict?")

    assert verdict == Verdict(decision="HOLD", confidence=0.2)
    assert ollama_server.requests[0].json["format"]["properties"].keys() == {
        "decision",
        "confidence",
    }


async def test_ollama_tool_call_arguments_object_parsed_by_bind_tools(
    ollama_server: OllamaServer,
) -> None:
    ollama_server.script(ToolCall("record_verdict", {"decision": "BUY", "confidence": 0.6}))

    reply = await make_ollama(ollama_server).bind_tools([record_verdict]).ainvoke("verdict?")

    assert isinstance(reply, AIMessage)
    assert reply.tool_calls[0]["name"] == "record_verdict"
    assert reply.tool_calls[0]["args"] == {"decision": "BUY", "confidence": 0.6}
    assert ollama_server.requests[0].json["tools"][0]["function"]["name"] == "record_verdict"


async def test_ollama_500_raises_response_error_with_status_code(
    ollama_server: OllamaServer,
) -> None:
    ollama_server.script(HttpError(500, body={"error": "model runner crashed"}))

    with pytest.raises(ollama.ResponseError) as caught:
        await make_ollama(ollama_server).ainvoke("verdict?")

    assert caught.value.status_code == 500
    assert caught.value.error == "model runner crashed"


async def test_ollama_reply_later_than_timeout_raises_httpx_read_timeout(
    ollama_server: OllamaServer,
) -> None:
    ollama_server.script(Delay(5))

    with pytest.raises(httpx.ReadTimeout):
        await make_ollama(ollama_server, client_kwargs={"timeout": 0.2}).ainvoke("verdict?")


async def test_ollama_connection_cut_mid_stream_raises_remote_protocol_error(
    ollama_server: OllamaServer,
) -> None:
    ollama_server.script(Truncated("BUY all"))

    with pytest.raises(httpx.RemoteProtocolError):
        await make_ollama(ollama_server).ainvoke("verdict?")


async def test_ollama_stream_without_done_line_returns_partial_content_silently(
    ollama_server: OllamaServer,
) -> None:
    ollama_server.script(Truncated("BUY all of", cut_connection=False))

    reply = await make_ollama(ollama_server).ainvoke("verdict?")

    # No error: the partial text comes back; only the missing usage and done_reason tell.
    assert reply.content == "BUY all of"
    assert reply.usage_metadata is None
    assert "done_reason" not in reply.response_metadata


async def test_ollama_empty_stream_without_done_line_raises_value_error(
    ollama_server: OllamaServer,
) -> None:
    ollama_server.script(Truncated("", cut_connection=False))

    with pytest.raises(ValueError, match="No data received from Ollama stream"):
        await make_ollama(ollama_server).ainvoke("verdict?")


async def test_ollama_garbage_body_raises_json_decode_error(ollama_server: OllamaServer) -> None:
    ollama_server.script(Garbage(b"<html>502 Bad Gateway</html>"))

    with pytest.raises(json.JSONDecodeError):
        await make_ollama(ollama_server).ainvoke("verdict?")


async def test_ollama_non_streaming_request_gets_one_json_object(
    ollama_server: OllamaServer,
) -> None:
    ollama_server.script(Text("HOLD"))
    client = ollama.AsyncClient(host=ollama_server.base_url)

    response = await client.chat(
        model=OLLAMA_MODEL, messages=[{"role": "user", "content": "verdict?"}], stream=False
    )

    assert response.message.content == "HOLD"
    assert response.done is True
    assert response.eval_count == 1


def test_ollama_validate_model_on_init_checks_tags(ollama_server: OllamaServer) -> None:
    make_ollama(ollama_server, validate_model_on_init=True)
    with pytest.raises(ValueError, match="not found in Ollama"):
        ChatOllama(model="llama3:70b", base_url=ollama_server.base_url, validate_model_on_init=True)

    assert [(r.method, r.path) for r in ollama_server.requests] == [("GET", "/api/tags")] * 2
