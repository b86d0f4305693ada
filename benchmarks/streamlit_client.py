"""A student without a browser: one Streamlit session driven over the app's websocket, as the
browser's JavaScript drives it, so that a load test costs the server what thirty laptops
would and not thirty Chromiums on the server's own cores.

The protocol (streamlit 1.67, its Starlette server): the client opens `/_stcore/stream` with
the `streamlit` subprotocol (an XSRF token only matters for sign-in cookies, which the app
does not use); it asks for a run with a BackMsg `rerun_script` holding a ClientState (the
page's script hash, the query string, the widgets' values); the server answers with
ForwardMsgs: `delta`s that draw elements at paths in the page's tree, `page_info_changed`
when the query string changes, `navigation` with the pages, and `script_finished` at the end
of the run. A widget is named by its element id, which ends with the user key
(`$$ID-<hash>-tok_text`): the client learns the ids from the elements a run draws.

Like the browser, the client keeps what the last run drew (the latest element at each path)
and the widget values it set on the current page, and sends those values with every rerun."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.runtime.state.common import user_key_from_element_id
from websockets.asyncio.client import connect

# A run is over (the page idle, as the browser's data-test-script-state="notRunning") when the
# script ends for good: not when it is cut short by st.rerun (a new run follows), nor when a
# fragment alone reran.
FINAL = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR}
TEXT_FIELDS = {  # element kind → the fields whose text a reader sees
    "markdown": ("body",), "text": ("body",), "heading": ("body",), "html": ("body",), "alert": ("body",),
    "metric": ("label", "body"), "exception": ("type", "message"), "caption": ("body",),
}


class ClientError(RuntimeError):
    """The app did not answer as a browser would expect: the benchmark stops on it."""


@dataclass
class Page:
    """What the last run drew: element kind and proto at each path of the page's tree."""

    elements: dict[tuple, tuple[str, object]] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list:
        return [proto for k, proto in self.elements.values() if k == kind]

    def texts(self) -> list[str]:
        """Every text shown: Markdown, captions, metrics, HTML, alerts, exceptions."""
        return [getattr(proto, name) for kind, proto in self.elements.values()
                for name in TEXT_FIELDS.get(kind, ()) if getattr(proto, name, "")]

    def widget_id(self, key: str) -> str:
        for _, proto in self.elements.values():
            element_id = getattr(proto, "id", "")
            if element_id.startswith("$$ID") and user_key_from_element_id(element_id) == key:
                return element_id
        raise ClientError(f"no widget with key {key!r} on the page")

    def button_id(self, label: str) -> str:
        for proto in self.of_kind("button"):
            if proto.label == label:
                return proto.id
        raise ClientError(f"no button {label!r} on the page")


class StreamlitClient:
    """One browser tab's worth of Streamlit session."""

    def __init__(self, url: str, name: str):
        self.url, self.name = url.replace("http", "ws", 1).rstrip("/") + "/_stcore/stream", name
        self.page = Page()
        self.pages: dict[str, str] = {}  # page title → script hash, from the `navigation` message
        self.page_hash = ""
        self.query = ""  # the address's query string, as the server last set it
        self.values: dict[str, WidgetState] = {}  # widgets set on the current page, by id
        self._finished: asyncio.Queue[int] = asyncio.Queue()
        self._socket = self._reader = None

    async def __aenter__(self) -> StreamlitClient:
        # max_size=None: a page with charts is several MB; compression off, as the browser's is by default.
        self._socket = await connect(self.url, subprotocols=["streamlit"], max_size=None, compression=None,
                                     open_timeout=120, ping_interval=None)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc) -> None:
        await self._socket.close()
        self._reader.cancel()

    async def _read(self) -> None:
        async for data in self._socket:
            msg = ForwardMsg()
            msg.ParseFromString(data)
            kind = msg.WhichOneof("type")
            if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                element_kind = element.WhichOneof("type")
                self.page.elements[tuple(msg.metadata.delta_path)] = (element_kind, getattr(element, element_kind))
            elif kind == "page_info_changed":
                self.query = msg.page_info_changed.query_string
            elif kind == "navigation":
                self.pages = {page.page_name: page.page_script_hash for page in msg.navigation.app_pages}
                self.page_hash = msg.navigation.page_script_hash
            elif kind == "script_finished":
                await self._finished.put(msg.script_finished)

    async def rerun(self, changes: dict[str, WidgetState] | None = None, timeout: float = 300) -> float:
        """Send the page's widget values with `changes`, as a browser does when a widget changes;
        seconds until the run that answers it ends. Triggers (buttons) fire once, values stay."""
        changes = changes or {}
        self.values.update({wid: state for wid, state in changes.items() if not state.HasField("trigger_value")})
        msg = BackMsg()
        client = msg.rerun_script
        client.query_string, client.page_script_hash = self.query, self.page_hash
        client.widget_states.widgets.extend({**self.values, **changes}.values())
        while not self._finished.empty():  # a fragment's late answer is not this run's end
            self._finished.get_nowait()
        self.page = Page()  # the run redraws the page
        started = time.perf_counter()
        await self._socket.send(msg.SerializeToString())
        while True:
            try:
                status = await asyncio.wait_for(self._finished.get(), timeout)
            except TimeoutError:
                raise ClientError(f"{self.name}: no answer from the app within {timeout:.0f} s") from None
            if status in FINAL:
                return time.perf_counter() - started

    async def open(self, title: str) -> float:
        """Go to a page by its title (a click on the sidebar's link): its widgets start afresh."""
        if title not in self.pages:
            raise ClientError(f"{self.name}: no page {title!r} in the navigation ({', '.join(self.pages)})")
        self.page_hash, self.values = self.pages[title], {}
        self.query = "&".join(part for part in self.query.split("&") if part.startswith("who="))  # the sign-in stays
        return await self.rerun()

    def set_text(self, key: str, text: str) -> dict[str, WidgetState]:
        return {self.page.widget_id(key): WidgetState(id=self.page.widget_id(key), string_value=text)}

    def choose(self, key: str, *options: str) -> dict[str, WidgetState]:
        """A segmented control's, select slider's or multiselect's choice, by the options' labels."""
        state = WidgetState(id=self.page.widget_id(key))
        state.string_array_value.data.extend(options)
        return {state.id: state}

    def click(self, label: str) -> dict[str, WidgetState]:
        button_id = self.page.button_id(label)
        return {button_id: WidgetState(id=button_id, trigger_value=True)}
