%% @private
%% @doc The fin_close options of the transports' listeners ({@link
%% fin_close_transport}), by the listener's port number, for the closes of
%% the connections it accepts; each erased once its listen socket is
%% closed. This process watches the listen sockets (a monitor on the port,
%% or on the process of a `{inet_backend, socket}' socket), so that a
%% listener stopped by any means (`ranch:stop_listener/1', its owner's
%% exit) leaves nothing behind; and it makes every write, so that two
%% listeners starting at once do not lose each other's options.
%%
%% One persistent term holds them all: read by every connection without
%% copying, written once per listener start and stop. Two listeners on one
%% port number (on different addresses) share the last one's options.
-module(fin_close_listeners).
-behaviour(gen_server).

-export([start_link/0]).
-export([remember/3]).
-export([options/1]).
-export([any/0]).
-export([init/1]).
-export([handle_call/3]).
-export([handle_cast/2]).
-export([handle_info/2]).

-define(KEY, {?MODULE, options}).

-type watched() :: port() | pid().
%% What closes with a listen socket: its port, or the gen_tcp_socket
%% process of a `{inet_backend, socket}' one.

-type state() :: #{inet:port_number() => reference()}.
%% The monitor of each port number's listen socket.

-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% @doc Remembers the options of the listener on `LSocket' (its local port
%% number `Port') until that socket closes; no options (`#{}') forget the
%% port number's. Starts the fin_close application if it is not running.
-spec remember(term(), inet:port_number(), fin_close:opts()) -> ok.
remember(LSocket, Port, Opts) ->
    _ = whereis(?MODULE) =:= undefined andalso application:ensure_all_started(fin_close),
    gen_server:call(?MODULE, {remember, watched(LSocket, self()), Port, Opts}).

%% @doc The options of the listener on port number `Port', `#{}' for none.
-spec options(inet:port_number()) -> fin_close:opts().
options(Port) ->
    case persistent_term:get(?KEY, #{}) of
        #{Port := {Opts, _}} -> Opts;
        _ -> #{}
    end.

%% @doc Whether any listener has options: while none has (the default), a
%% connection need not look for its listener's.
-spec any() -> boolean().
any() ->
    map_size(persistent_term:get(?KEY, #{})) > 0.

-spec init([]) -> {ok, state()}.
init([]) ->
    %% Restarted, this process has lost its monitors: it watches again what
    %% the persistent term still holds (a socket closed meanwhile is
    %% reported at once).
    Listeners = persistent_term:get(?KEY, #{}),
    {ok, maps:map(fun(_, {_, Watched}) -> monitor_watched(Watched) end, Listeners)}.

-spec handle_call(term(), gen_server:from(), state()) -> {reply, ok | {error, badarg}, state()}.
handle_call({remember, Watched, Port, Opts}, _From, State) ->
    Forgotten = forget(Port, State),
    Remembered = case map_size(Opts) of
                     0 ->
                         Forgotten;
                     _ ->
                         put_listeners((listeners())#{Port => {Opts, Watched}}),
                         Forgotten#{Port => monitor_watched(Watched)}
                 end,
    {reply, ok, Remembered};
handle_call(_Ignored, _From, State) ->
    {reply, {error, badarg}, State}.

-spec handle_cast(term(), state()) -> {noreply, state()}.
handle_cast(_Ignored, State) ->
    {noreply, State}.

-spec handle_info(term(), state()) -> {noreply, state()}.
handle_info({'DOWN', Monitor, _, _, _}, State) ->
    %% Only the port number's current listener: an earlier one on the same
    %% number was demonitored when it was replaced.
    case [Port || {Port, M} <- maps:to_list(State), M =:= Monitor] of
        [Port] -> {noreply, forget(Port, State)};
        [] -> {noreply, State}
    end;
handle_info(_Ignored, State) ->
    {noreply, State}.

-spec forget(inet:port_number(), state()) -> state().
forget(Port, State) ->
    case maps:take(Port, State) of
        {Monitor, Rest} ->
            erlang:demonitor(Monitor, [flush]),
            put_listeners(maps:remove(Port, listeners())),
            Rest;
        error ->
            State
    end.

-spec listeners() -> #{inet:port_number() => {fin_close:opts(), watched()}}.
listeners() ->
    persistent_term:get(?KEY, #{}).

%% An empty map is erased rather than kept: nothing is left of fin_close's
%% listeners once the last one stopped.
-spec put_listeners(#{inet:port_number() => {fin_close:opts(), watched()}}) -> ok.
put_listeners(Listeners) when map_size(Listeners) =:= 0 ->
    _ = persistent_term:erase(?KEY),
    ok;
put_listeners(Listeners) ->
    persistent_term:put(?KEY, Listeners).

%% The listen socket's port, or the process of a {inet_backend, socket}
%% socket (which ends with its socket); an ssl listen socket's TCP one. A
%% socket of a shape not known here: the process that opened it, its owner,
%% whose exit closes it.
-spec watched(term(), pid()) -> watched().
watched(Port, _) when is_port(Port) -> Port;
watched({'$inet', gen_tcp_socket, {Server, _}}, _) when is_pid(Server) -> Server;
watched({sslsocket, nil, {Tcp, _}}, Owner) -> watched(Tcp, Owner);
watched(_, Owner) -> Owner.

-spec monitor_watched(watched()) -> reference().
monitor_watched(Port) when is_port(Port) -> erlang:monitor(port, Port);
monitor_watched(Pid) -> erlang:monitor(process, Pid).
