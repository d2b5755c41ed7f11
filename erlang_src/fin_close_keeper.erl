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
%% connection's duplicate and discards the peer's bytes meanwhile.
-module(fin_close_keeper).
-behaviour(gen_server).

-export([start_link/0]).
-export([flush_and_close/3]).
-export([init/1]).
-export([handle_call/3]).
-export([handle_cast/2]).
-export([handle_info/2]).

%% The inet driver request prim_inet:close/1 uses to learn when a port's
%% output queue is empty. prim_inet does not export subscribe/2, and the
%% constants live in kernel/src/inet_int.hrl and prim_inet.erl, which are
%% not installed with the runtime; these are their OTP 25 values. Should a
%% later OTP answer differently, the keeper falls back to polling the
%% queue size.
-define(INET_DRV_CONTROL_MAGIC, 16#03f1a300).
-define(INET_REQ_SUBSCRIBE, 24).
-define(INET_SUBS_EMPTY_OUT_Q, 1).
-define(INET_REP_OK, 1).
-define(POLL_MS, 10).

-type watched() :: #{port() => {Ticket :: reference(), Timer :: reference()}}.

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% @doc Runs in the caller of `fin_close:close/2': stops the port reading,
%% makes the keeper its owner (so the caller may exit), and hands it over.
-spec flush_and_close(port(), reference(), #{linger_timeout := non_neg_integer(), _ => _}) -> ok.
flush_and_close(Port, Ticket, #{linger_timeout := Timeout}) ->
    %% In active mode the port would read on, and close itself with its
    %% queue on the peer's FIN when exit_on_close is set.
    _ = inet:setopts(Port, [{active, false}]),
    Keeper = keeper(),
    try erlang:port_connect(Port, Keeper) of
        true ->
            %% As gen_tcp:controlling_process/2 does: the old owner's exit
            %% must not close the port. Harmless when the caller is not the
            %% owner (the owner then stays linked; documented).
            true = unlink(Port),
            gen_server:cast(Keeper, {watch, Port, Ticket, Timeout})
    catch
        error:badarg ->
            %% Closed meanwhile, queue and all.
            _ = fin_close_nif:port_done(Ticket, false),
            ok
    end.

-spec keeper() -> pid().
keeper() ->
    case whereis(?MODULE) of
        undefined ->
            %% Used as a library without starting the application.
            {ok, _} = application:ensure_all_started(fin_close),
            whereis(?MODULE);
        Pid ->
            Pid
    end.

-spec init([]) -> {ok, watched()}.
init([]) ->
    process_flag(trap_exit, true),
    {ok, #{}}.

-spec handle_call(term(), gen_server:from(), watched()) -> {reply, {error, badarg}, watched()}.
handle_call(_Request, _From, Watched) ->
    {reply, {error, badarg}, Watched}.

-spec handle_cast({watch, port(), reference(), non_neg_integer()}, watched()) -> {noreply, watched()}.
handle_cast({watch, Port, Ticket, Timeout}, Watched) ->
    %% The port sends {empty_out_q, Port} to the subscriber when its queue
    %% has been written; N is what is queued now.
    case subscribe_empty_out_q(Port) of
        {ok, 0} ->
            done(Port, Ticket, true),
            {noreply, Watched};
        {ok, _Queued} ->
            Timer = erlang:start_timer(Timeout, self(), Port),
            {noreply, Watched#{Port => {Ticket, Timer}}};
        unknown ->
            Timer = erlang:start_timer(Timeout, self(), Port),
            _ = erlang:send_after(?POLL_MS, self(), {poll, Port}),
            {noreply, Watched#{Port => {Ticket, Timer}}};
        error ->
            %% Closed meanwhile, queue and all.
            done(Port, Ticket, false),
            {noreply, Watched}
    end.

-spec handle_info(term(), watched()) -> {noreply, watched()}.
handle_info({empty_out_q, Port}, Watched) ->
    case maps:take(Port, Watched) of
        {{Ticket, Timer}, Rest} ->
            _ = erlang:cancel_timer(Timer),
            done(Port, Ticket, true),
            {noreply, Rest};
        error ->
            {noreply, Watched}
    end;
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
handle_info({timeout, _, Port}, Watched) when is_map_key(Port, Watched) ->
    %% The reactor reaches the same deadline and resets the connection;
    %% closing the port lets that reset happen.
    close_port(Port),
    {noreply, maps:remove(Port, Watched)};
handle_info({'EXIT', Port, _}, Watched) when is_map_key(Port, Watched) ->
    %% The port died with output it never wrote.
    {{Ticket, Timer}, Rest} = maps:take(Port, Watched),
    _ = erlang:cancel_timer(Timer),
    _ = fin_close_nif:port_done(Ticket, false),
    {noreply, Rest};
handle_info(_Ignored, Watched) ->
    %% {tcp, ...} read before active mode was switched off, and the 'EXIT'
    %% of ports this process closed itself.
    {noreply, Watched}.

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

-spec done(port(), reference(), boolean()) -> ok.
done(Port, Ticket, Flushed) ->
    close_port(Port),
    _ = fin_close_nif:port_done(Ticket, Flushed),
    ok.

-spec close_port(port()) -> ok.
close_port(Port) ->
    _ = (catch erlang:port_close(Port)),
    ok.
