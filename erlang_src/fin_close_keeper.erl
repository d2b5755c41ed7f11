%% @private
%% @doc Holds the ports that still had output queued when they were closed
%% with `fin_close:close/2', and closes each once its queue is written.
%%
%% The default backend queues inside the port what the kernel cannot take
%% yet; closing the port would throw that away, and waiting for it would
%% block the caller on the peer. So the caller gives the port to this one
%% process (one for all ports, as the reactor is one thread for all
%% sockets), which asks the port to say when its queue is empty, closes it
%% then, and tells the reactor to send FIN. The reactor already holds the
%% connection's duplicate and discards the peer's bytes meanwhile; it also
%% keeps the one clock: when it gives up on the socket (timeout, drain
%% limit, reset) it tells the keeper, which closes the port then.
%%
%% It also writes the debug log line of every socket that is cut off; it is
%% told of all of them while debug logging is on for it.
-module(fin_close_keeper).
-behaviour(gen_server).

-include_lib("kernel/include/logger.hrl").

-export([start_link/0]).
-export([find/0]).
-export([flush_and_close/3]).
-export([logging/0]).
-export([init/1]).
-export([handle_call/3]).
-export([handle_cast/2]).
-export([handle_info/2]).

%% The inet driver request prim_inet:close/1 uses to learn when a port's
%% output queue is empty. prim_inet does not export subscribe/2, and the
%% constants live in kernel/src/inet_int.hrl and prim_inet.erl, which are
%% not installed with the runtime; these are their OTP 25 values. Should a
%% later OTP answer differently, the keeper falls back to polling the
%% queue size, and says so in its state.
-define(INET_DRV_CONTROL_MAGIC, 16#03f1a300).
-define(INET_REQ_SUBSCRIBE, 24).
-define(INET_SUBS_EMPTY_OUT_Q, 1).
-define(INET_REP_OK, 1).
-define(POLL_MS, 10).

-type how() :: subscribed | polling.
%% Each watched port, and the port of each ticket.
-type watched() :: #{port() => {Ticket :: reference(), how()}, {ticket, reference()} => port()}.

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% @doc The keeper, starting the application if it is not running (fin_close
%% used as a plain library).
-spec find() -> {ok, pid()} | {error, atom()}.
find() ->
    case whereis(?MODULE) of
        undefined ->
            _ = application:ensure_all_started(fin_close),
            case whereis(?MODULE) of
                undefined -> {error, keeper_down};
                Pid -> {ok, Pid}
            end;
        Pid ->
            {ok, Pid}
    end.

%% @doc Runs in the caller of `fin_close:close/2', once the reactor holds
%% the duplicate: stops the port reading and gives it to the keeper.
-spec flush_and_close(pid(), port(), reference()) -> ok | {error, keeper_down}.
flush_and_close(Keeper, Port, Ticket) ->
    %% In active mode the port would read on, and close itself with its
    %% queue on the peer's FIN when exit_on_close is set.
    _ = inet:setopts(Port, [{active, false}]),
    %% No timeout: the call's monitor notices a keeper that dies, and the
    %% keeper answers at once otherwise.
    try gen_server:call(Keeper, {adopt, Port, Ticket}, infinity) of
        ok ->
            %% As gen_tcp:controlling_process/2 does: the old owner's exit
            %% must not close the port. Harmless when the caller is not the
            %% owner (the owner then stays linked; documented).
            true = unlink(Port),
            ok
    catch
        exit:_ ->
            %% Nobody will write the queue out: say so, and reset rather
            %% than let the peer take a truncated reply for a whole one.
            _ = fin_close_nif:port_done(Ticket, false),
            discard_port(Port),
            {error, keeper_down}
    end.

%% @doc Whether the keeper writes debug log lines (set with
%% `logger:set_application_level(fin_close, debug)').
-spec logging() -> boolean().
logging() ->
    logger:allow(debug, ?MODULE).

-spec init([]) -> {ok, watched()}.
init([]) ->
    process_flag(trap_exit, true),
    {ok, #{}}.

-spec handle_call({adopt, port(), reference()}, gen_server:from(), watched()) ->
    {reply, ok, watched()}.
handle_call({adopt, Port, Ticket}, _From, Watched) ->
    %% Owning the port (port_connect also links it) keeps it open after its
    %% old owner exits, and makes its 'EXIT' reach us if it dies.
    Owned = try erlang:port_connect(Port, self()) catch error:badarg -> false end,
    case Owned andalso not fin_close_nif:ended(Ticket) andalso subscribe_empty_out_q(Port) of
        {ok, 0} ->
            flushed(Port, Ticket),
            {reply, ok, Watched};
        {ok, _Queued} ->
            {reply, ok, Watched#{Port => {Ticket, subscribed}, {ticket, Ticket} => Port}};
        unknown ->
            _ = erlang:send_after(?POLL_MS, self(), {poll, Port}),
            {reply, ok, Watched#{Port => {Ticket, polling}, {ticket, Ticket} => Port}};
        _ ->
            %% Closed meanwhile, queue and all; or the reactor gave up on
            %% the socket before this call came (the report was ignored).
            discard_port(Port),
            _ = fin_close_nif:port_done(Ticket, false),
            {reply, ok, Watched}
    end.

-spec handle_cast(term(), watched()) -> {noreply, watched()}.
handle_cast(_Ignored, Watched) ->
    {noreply, Watched}.

-spec handle_info(term(), watched()) -> {noreply, watched()}.
handle_info({empty_out_q, Port}, Watched) when is_map_key(Port, Watched) ->
    {Ticket, Rest} = forget(Port, Watched),
    flushed(Port, Ticket),
    {noreply, Rest};
handle_info({poll, Port}, Watched) when is_map_key(Port, Watched) ->
    case erlang:port_info(Port, queue_size) of
        {queue_size, 0} ->
            handle_info({empty_out_q, Port}, Watched);
        {queue_size, _} ->
            _ = erlang:send_after(?POLL_MS, self(), {poll, Port}),
            {noreply, Watched};
        undefined ->
            handle_info({'EXIT', Port, closed}, Watched)
    end;
handle_info({fin_close, Ticket, Result}, Watched) when is_map_key({ticket, Ticket}, Watched) ->
    %% The reactor gave up before the port drained (timeout, reset, drain
    %% limit) and has set SO_LINGER 0 where it cut off: closing the port,
    %% now the last descriptor, carries that out.
    log_end(Result),
    Port = maps:get({ticket, Ticket}, Watched),
    {_, Rest} = forget(Port, Watched),
    discard_port(Port),
    {noreply, Rest};
handle_info({fin_close, _Ticket, Result}, Watched) ->
    log_end(Result),
    {noreply, Watched};
handle_info({'EXIT', Port, _}, Watched) when is_map_key(Port, Watched) ->
    %% The port died with output it never wrote.
    {Ticket, Rest} = forget(Port, Watched),
    _ = fin_close_nif:port_done(Ticket, false),
    {noreply, Rest};
handle_info(_Ignored, Watched) ->
    %% {tcp, ...} read before active mode was switched off, the 'EXIT' of
    %% ports this process closed itself, and reports of sockets whose port
    %% it has already closed.
    {noreply, Watched}.

-spec log_end(fin_close:result() | map()) -> ok.
log_end(#{outcome := clean}) ->
    ok;
log_end(#{outcome := Outcome, lingered_ms := Ms, drained := Drained} = Result) ->
    Local = maps:get(local, Result, undefined),
    Peer = maps:get(peer, Result, undefined),
    Why = case Outcome of
              timeout -> "cut off by linger_timeout";
              drain_limit -> "cut off by max_drain";
              reset -> "reset by the peer";
              error -> io_lib:format("ended by error ~p", [maps:get(reason, Result, undefined)]);
              _ -> io_lib:format("ended ~p", [Outcome])
          end,
    ?LOG_DEBUG("fin_close: ~s -> ~s ~s after ~b ms, ~b bytes discarded",
               [address(Local), address(Peer), Why, Ms, Drained],
               #{domain => [fin_close], fin_close => Result});
log_end(_) ->
    %% A report of another shape (a library from another release).
    ok.

-spec address(fin_close:address() | undefined) -> string().
address({IP, Port}) when tuple_size(IP) =:= 8 -> "[" ++ inet:ntoa(IP) ++ "]:" ++ integer_to_list(Port);
address({IP, Port}) -> inet:ntoa(IP) ++ ":" ++ integer_to_list(Port);
address(undefined) -> "(gone)".

-spec forget(port(), watched()) -> {reference(), watched()}.
forget(Port, Watched) ->
    {{Ticket, _}, Rest} = maps:take(Port, Watched),
    {Ticket, maps:remove({ticket, Ticket}, Rest)}.

%% Asks the port to send {empty_out_q, Port} to this process once its
%% output queue is empty; returns what is queued now (the port subscribes
%% nobody when that is 0).
-spec subscribe_empty_out_q(port()) -> {ok, non_neg_integer()} | unknown | error.
subscribe_empty_out_q(Port) ->
    Request = ?INET_DRV_CONTROL_MAGIC + ?INET_REQ_SUBSCRIBE,
    try erlang:port_control(Port, Request, [?INET_SUBS_EMPTY_OUT_Q]) of
        [?INET_REP_OK, ?INET_SUBS_EMPTY_OUT_Q, B3, B2, B1, B0] ->
            {ok, (B3 bsl 24) bor (B2 bsl 16) bor (B1 bsl 8) bor B0};
        _ ->
            unknown
    catch
        error:badarg ->
            case erlang:port_info(Port, queue_size) of
                undefined -> error;
                _ -> unknown
            end
    end.

%% The queue is written: close the port (it closes at once now) and let
%% the reactor send FIN.
-spec flushed(port(), reference()) -> ok.
flushed(Port, Ticket) ->
    _ = (catch erlang:port_close(Port)),
    _ = fin_close_nif:port_done(Ticket, true),
    ok.

%% port_close/1 alone would not close a port that still has output queued:
%% the driver goes on writing it first. With SO_LINGER 0 it drops the queue
%% and closes at once (what prim_inet:close/1 does for {linger, {true, 0}}).
%% Unlike a kill, this sends linked processes (the caller, still linked
%% during the hand-over) no exit signal that could take them down.
-spec discard_port(port()) -> ok.
discard_port(Port) ->
    _ = inet:setopts(Port, [{linger, {true, 0}}]),
    _ = (catch erlang:port_close(Port)),
    ok.
