#!/usr/bin/env escript
%%! -noshell
%% The experiment that exposed the bug, on loopback: a client sends a
%% request the server never reads (and a pipelined one 100 ms later); the
%% server sends a 2 MiB reply and closes; the client reads 16 KiB at a time.
%% Run with gen_tcp:close/1, with the usual workaround (gen_tcp:recv/3 for
%% 10 ms, then gen_tcp:close/1), and with fin_close:close/1. The client sets
%% show_econnreset, so a reset shows as econnreset and closed means FIN.
-mode(compile).

-define(REQUEST, 1000).
-define(PIPELINED, 5000).
-define(REPLY, 2 * 1024 * 1024).
-define(ROUNDS, 3).

main(_) ->
    Root = filename:dirname(filename:dirname(filename:absname(escript:script_name()))),
    true = code:add_patha(filename:join(Root, "_build/default/lib/fin_close/ebin")),
    %% The test suites' helpers (pairs, the slow reader, the kernel's
    %% counters), which the library's app does not ship.
    Ct = filename:join(Root, "support/fin_close_ct.erl"),
    {ok, fin_close_ct, Beam} = compile:file(Ct, [binary, report]),
    {module, fin_close_ct} = code:load_binary(fin_close_ct, Ct, Beam),
    {ok, _} = application:ensure_all_started(fin_close),
    io:format("~s~n", [header()]),
    io:format("~-18s ~5s ~17s ~11s ~19s ~-20s ~-26s ~s~n",
              ["close with", "round", "inq before close", "close took", "client received",
               "client's read ended", "TCPAbortOnClose", "TCPAbortOnData"]),
    Methods = [{"gen_tcp:close/1", fun gen_tcp:close/1},
               {"recv 10ms + close", fun recv_then_close/1},
               {"fin_close:close/1", fun fin_close:close/1}],
    _ = [run(Name, Close, Round) || {Name, Close} <- Methods, Round <- lists:seq(1, ?ROUNDS)],
    io:format("~nfin_close:stats() = ~p~n", [fin_close:stats()]),
    io:format("(the counters are the kernel's, for the whole network namespace)~n"),
    ok.

header() ->
    io_lib:format("fin_close demo, OTP ~s, Linux ~s~n"
                  "client: sends ~B request bytes the server never reads, ~B more after 100 ms,~n"
                  "        reads 16 KiB at a time; server: sends a ~B-byte reply, then closes.~n",
                  [erlang:system_info(otp_release), os:cmd("uname -r") -- "\n",
                   ?REQUEST, ?PIPELINED, ?REPLY]).

run(Name, Close, Round) ->
    Before = fin_close_ct:abort_counters(),
    {Server, Sock} = fin_close_ct:pair([{kind, inet}], {127, 0, 0, 1}, []),
    Parent = self(),
    Client = spawn_link(fun() -> receive go -> client(Parent, Sock) end end),
    ok = gen_tcp:controlling_process(Sock, Client),
    Client ! go,
    fin_close_ct:wait_inq(Server, ?REQUEST),
    {ok, Inq} = fin_close:inq(Server),
    ok = gen_tcp:send(Server, binary:copy(<<"r">>, ?REPLY)),
    {Micros, ok} = timer:tc(fun() -> Close(Server) end),
    {Received, Ended} = receive {Client, Result} -> Result after 60000 -> {0, hung} end,
    timer:sleep(100),
    After = fin_close_ct:abort_counters(),
    io:format("~-18s ~5B ~17B ~8.2f ms ~19s ~-20w ~-26s ~s~n",
              [Name, Round, Inq, Micros / 1000, io_lib:format("~B of ~B", [Received, ?REPLY]), Ended,
               delta(Before, After, abort_on_close), delta(Before, After, abort_on_data)]).

%% The usual workaround: read what is there, briefly, then close.
recv_then_close(Sock) ->
    _ = gen_tcp:recv(Sock, 0, 10),
    gen_tcp:close(Sock).

%% The client: a request, a pipelined one 100 ms later, then a slow reader
%% (16 KiB at a time, 1 ms apart: fin_close_ct:read_all/2).
client(Parent, Sock) ->
    ok = gen_tcp:send(Sock, binary:copy(<<"q">>, ?REQUEST)),
    timer:sleep(100),
    _ = gen_tcp:send(Sock, binary:copy(<<"p">>, ?PIPELINED)),
    Parent ! {self(), fin_close_ct:read_all(Sock, 0)},
    gen_tcp:close(Sock).

delta(Before, After, Key) ->
    #{Key := B} = Before,
    #{Key := A} = After,
    io_lib:format("~B -> ~B (+~B)", [B, A, A - B]).
