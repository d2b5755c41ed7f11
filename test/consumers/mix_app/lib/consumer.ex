defmodule Consumer do
  @moduledoc """
  A server that answers without reading the request, then closes with
  `:fin_close.close/1`: the client must get the whole reply and a FIN, and
  the socket must show in `:fin_close.i()` with its unread request.
  """

  @request 1000
  @reply 1_048_576

  def main do
    {:ok, l} = :gen_tcp.listen(0, [:binary, active: false, ip: {127, 0, 0, 1}])
    {:ok, port} = :inet.port(l)
    {:ok, client} = :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false, show_econnreset: true])
    {:ok, server} = :gen_tcp.accept(l)
    :ok = :gen_tcp.send(client, :binary.copy("q", @request))
    wait_inq(server, @request)
    :fin_close.i()
    [%{recv_q: @request, state: :established}] =
      for %{socket: ^server} = s <- :fin_close.sockets(), do: s

    parent = self()
    reader = spawn_link(fn -> send(parent, {self(), read_all(client, 0)}) end)
    :ok = :gen_tcp.send(server, :binary.copy("r", @reply))
    :ok = :fin_close.close(server)

    receive do
      {^reader, {@reply, {:error, :closed}}} ->
        IO.puts("mix consumer: #{@reply} of #{@reply} bytes, then {error,closed} (FIN)")

      {^reader, other} ->
        IO.puts("mix consumer: got #{inspect(other)}")
        System.halt(1)
    after
      30_000 ->
        IO.puts("mix consumer: no reply")
        System.halt(1)
    end
  end

  defp wait_inq(sock, n) do
    case :fin_close.inq(sock) do
      {:ok, ^n} -> :ok
      _ -> Process.sleep(1); wait_inq(sock, n)
    end
  end

  defp read_all(sock, total) do
    case :gen_tcp.recv(sock, 0, 10_000) do
      {:ok, data} -> read_all(sock, total + byte_size(data))
      {:error, _} = ending -> {total, ending}
    end
  end
end
