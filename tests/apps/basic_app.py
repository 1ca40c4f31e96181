"""A Starlette app with every kind of route the middleware must label, for uvicorn tests.

Run from the repository root:

    HAUSWACHT_DB=/tmp/events.db python -m uvicorn tests.apps.basic_app:app --port 8000

Settings come from the HAUSWACHT_* environment variables, as in production.
"""

from __future__ import annotations

import asyncio
import threading

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route

from hauswacht import HauswachtMiddleware, capture_exception, measure, record_metric

STREAM_CHUNKS = 5
STREAM_CHUNK = b"x" * 100
BACKGROUND_SECONDS = 0.3
SLOW_SECONDS = 5.0
MAX_SLEEP_SECONDS = 10.0


class Abort(BaseException):
    """Not an Exception subclass, so Starlette's error middleware lets it through."""


class TourNotFound(Exception):
    pass


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def tour(request: Request) -> JSONResponse:
    return JSONResponse({"tour_id": request.path_params["tour_id"]})


async def create_tour(request: Request) -> JSONResponse:
    return JSONResponse({"created": True}, status_code=201)


async def stream(request: Request) -> StreamingResponse:
    async def chunks():
        for _ in range(STREAM_CHUNKS):
            yield STREAM_CHUNK
            await asyncio.sleep(0)

    return StreamingResponse(chunks(), media_type="text/plain")


async def boom(request: Request) -> PlainTextResponse:
    try:
        {}["tour"]
    except KeyError as exc:
        raise TourNotFound(f"tour {request.query_params.get('id', '42')} not found") from exc
    return PlainTextResponse("unreachable")


async def finish_background() -> None:
    await asyncio.sleep(BACKGROUND_SECONDS)
    record_metric("background.done", 1)


async def background(request: Request) -> PlainTextResponse:
    return PlainTextResponse("queued", background=BackgroundTask(finish_background))


async def slow(request: Request) -> PlainTextResponse:
    """Wait until the client goes away (or SLOW_SECONDS pass), watching for http.disconnect."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SLOW_SECONDS
    while loop.time() < deadline:
        if await request.is_disconnected():
            break
        await asyncio.sleep(0.02)
    return PlainTextResponse("done")


async def sleep(request: Request) -> PlainTextResponse:
    """Sleep for ?seconds= (at most MAX_SLEEP_SECONDS) without ever calling receive()."""
    seconds = min(float(request.query_params.get("seconds", "1")), MAX_SLEEP_SECONDS)
    await asyncio.sleep(seconds)
    return PlainTextResponse("slept")


async def abort(request: Request) -> PlainTextResponse:
    raise Abort("request aborted by the view")


async def metrics(request: Request) -> PlainTextResponse:
    """Record one metric from the loop and one from a worker thread, and time both ways."""
    record_metric("loop.value", 1.5, unit="items", tags={"where": "loop", "a": 1})
    with measure("loop.block"):
        await asyncio.sleep(0)

    def in_thread() -> None:
        record_metric("thread.value", 2.5, tags={"where": "thread"})

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    return PlainTextResponse("measured")


async def captured(request: Request) -> PlainTextResponse:
    try:
        raise RuntimeError("handled inside the view")
    except RuntimeError:
        capture_exception(area="checkout")
    return PlainTextResponse("captured")


async def member(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{request.path_params['org_id']}/{request.path_params['user_id']}")


admin = Starlette(routes=[Route("/users/{user_id}", member)])

routes = [
    Route("/", home),
    Route("/tours/{tour_id:int}", tour),
    Route("/tours", create_tour, methods=["POST"]),
    Route("/stream", stream),
    Route("/boom", boom),
    Route("/background", background),
    Route("/slow", slow),
    Route("/sleep", sleep),
    Route("/abort", abort),
    Route("/metrics", metrics),
    Route("/captured", captured),
    Mount("/api", routes=[Route("/tours/{tour_id}", tour), Route("/ping", home)]),
    Mount("/orgs/{org_id}", app=admin),
]

app = Starlette(routes=routes)
app.add_middleware(HauswachtMiddleware)
