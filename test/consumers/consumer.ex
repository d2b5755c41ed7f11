defmodule Consumer do
  @moduledoc """
  The user's code in the fresh Mix project `scripts/consumers.sh` makes: it
  runs the README's Elixir block and doc/using.md's notification block, as
  pasted, on real connections whose requests were never read, and checks
  what they promise: the reply whole then FIN at the client, the unread
  bytes counted, the notified close clean and counted in `stats()`.
  Returns a summary, or raises.
  """

  @request 1000
  @reply 1_048_576

  def main(block_file, notify_file) do
    {:ok, _} = Application.ensure_all_started(:fin_close)
    {:ok, l} = :gen_tcp.listen(0, [:binary, active: false, ip: {127, 0, 0, 1}])
    {client, socket} = unread_request(l)
    {client2, socket2} = unread_request(l)

    [%{recv_q: @request, state: :established}] =
      for %{socket: ^socket} = s <- :fin_close.sockets(), do: s

    reader = reader(client)
    _ = reader(client2)
    reply = :binary.copy("r", @reply)
    {_, binding} = Code.eval_string(File.read!(block_file), socket: socket, reply: reply)
    @request = binding[:unread]

    receive do
      {^reader, {@reply, {:error, :closed}}} -> :ok
      {^reader, other} -> raise "client got #{inspect(other)}"
    after
      30_000 -> raise "no reply"
    end

    {{:clean, @request}, _} = Code.eval_string(File.read!(notify_file), socket2: socket2)
    %{clean: clean} = stats = :fin_close.stats()
    true = clean >= 1
    :ok = :gen_tcp.close(l)
    {:consumer_ok, %{reply: @reply, then: :closed, unread: @request, stats: stats}}
  end

  # A connection whose client sent a request the server has not read.
  defp unread_request(l) do
    {:ok, port} = :inet.port(l)
    opts = [:binary, active: false, show_econnreset: true]
    {:ok, client} = :gen_tcp.connect({127, 0, 0, 1}, port, opts)
    {:ok, server} = :gen_tcp.accept(l)
    :ok = :gen_tcp.send(client, :binary.copy("q", @request))
    wait_inq(server)
    {client, server}
  end

  defp wait_inq(sock) do
    case :fin_close.inq(sock) do
      {:ok, @request} -> :ok
      _ -> Process.sleep(1); wait_inq(sock)
    end
  end

  # Reads everything, then closes (our FIN answered with the client's own)
  # and tells the caller what it read and how it ended.
  defp reader(client) do
    parent = self()

    pid =
      spawn(fn ->
        receive do: (:go -> :ok)
        result = read_all(client, 0)
        :ok = :gen_tcp.close(client)
        send(parent, {self(), result})
      end)

    :ok = :gen_tcp.controlling_process(client, pid)
    send(pid, :go)
    pid
  end

  defp read_all(sock, total) do
    case :gen_tcp.recv(sock, 0, 10_000) do
      {:ok, data} -> read_all(sock, total + byte_size(data))
      {:error, _} = ending -> {total, ending}
    end
  end
end
