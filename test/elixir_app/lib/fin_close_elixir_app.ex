defmodule FinCloseElixirApp do
  @moduledoc """
  The Plug the suite serves, by path:

  - `/read`: reads the whole body and answers 200 with its length;
  - `/hello`: answers 200 `hello`, the connection kept alive;
  - `/ws`: a WebSocket that echoes, and closes on `bye`;
  - any other, `?size=N`: answers 413 with N bytes (default 2 MiB) without
    reading the request body, and asks for the connection to close (not
    over HTTP/2, where a `connection` header is a protocol error).
  """
  @behaviour Plug

  import Plug.Conn

  @impl true
  def init(opts), do: opts

  @impl true
  def call(%Plug.Conn{path_info: ["read"]} = conn, _opts) do
    {length, conn} = read_all(conn, 0)
    send_resp(conn, 200, Integer.to_string(length))
  end

  def call(%Plug.Conn{path_info: ["hello"]} = conn, _opts) do
    send_resp(conn, 200, "hello")
  end

  def call(%Plug.Conn{path_info: ["ws"]} = conn, _opts) do
    conn
    |> WebSockAdapter.upgrade(FinCloseElixirApp.Echo, [], timeout: 60_000)
    |> halt()
  end

  def call(conn, _opts) do
    conn = fetch_query_params(conn)
    size = String.to_integer(Map.get(conn.query_params, "size", "2097152"))

    conn =
      case get_http_protocol(conn) do
        :"HTTP/2" -> conn
        _ -> put_resp_header(conn, "connection", "close")
      end

    send_resp(conn, 413, :binary.copy("a", size))
  end

  defp read_all(conn, length) do
    case read_body(conn) do
      {:ok, data, conn} -> {length + byte_size(data), conn}
      {:more, data, conn} -> read_all(conn, length + byte_size(data))
    end
  end
end

defmodule FinCloseElixirApp.Echo do
  @moduledoc "A WebSocket that echoes what it gets and closes on `bye`."
  @behaviour WebSock

  @impl true
  def init(state), do: {:ok, state}

  @impl true
  def handle_in({"bye", _}, state), do: {:stop, :normal, 1000, state}
  def handle_in({text, _}, state), do: {:push, {:text, text}, state}

  @impl true
  def handle_info(_, state), do: {:ok, state}
end
