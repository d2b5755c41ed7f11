%% @private
%% @doc What the server transports share ({@link fin_close_ranch},
%% {@link fin_close_ranch_ssl}, {@link fin_close_thousand_island},
%% {@link fin_close_thousand_island_ssl}): the listener's fin_close options
%% (kept by {@link fin_close_listeners}, noted by each connection at its
%% handshake), the accept that reclaims, and the close path over the
%% transport each of them stands for. fin_close depends on none of those:
%% the transport module is only called at run time.
-module(fin_close_transport).

-export([listen/2]).
-export([split_options/1]).
-export([remember/3]).
-export([handshaken/2]).
-export([accept/2]).
-export([accept/3]).
-export([shutdown/3]).
-export([close/2]).

%% Ranch's transport options: `ranch:transport_opts()'.
-type transport_opts() :: #{socket_opts => [term()], atom() => term()}.
-export_type([transport_opts/0]).

%% @doc `Transport:listen/1' after taking `{fin_close, Opts}' out of
%% `socket_opts' (Ranch 2 refuses keys of its own it does not know and hands
%% `socket_opts' to the transport alone). Bad options raise `badarg'.
-spec listen(module(), transport_opts()) -> {ok, term()} | {error, atom()}.
listen(Transport, TransOpts) ->
    {Opts, Theirs} = split_options(maps:get(socket_opts, TransOpts, [])),
    case Transport:listen(TransOpts#{socket_opts => Theirs}) of
        {ok, LSocket} = Listening ->
            remember(Transport, LSocket, Opts),
            Listening;
        {error, _} = Error ->
            Error
    end.

%% @doc Takes `{fin_close, Opts}' out of a list of socket options: the last
%% one's options (checked: bad ones raise `badarg'), and the rest.
-spec split_options(list()) -> {fin_close:opts(), list()}.
split_options(SocketOpts) ->
    {Ours, Theirs} = lists:partition(fun(O) -> is_tuple(O) andalso element(1, O) =:= fin_close end,
                                     SocketOpts),
    Opts = case Ours of [] -> #{}; _ -> element(2, lists:last(Ours)) end,
    ok = fin_close:check_options(Opts),
    {Opts, Theirs}.

%% @doc `Transport:accept/2' (Ranch's); when the node is out of descriptors (`emfile',
%% `enfile'), lingering sockets give some back (fin_close:reclaim/0) and it
%% accepts once more, so that lingering never stops a listener accepting.
-spec accept(module(), term(), timeout()) -> {ok, term()} | {error, atom()}.
accept(Transport, LSocket, Timeout) ->
    reclaiming(fun() -> Transport:accept(LSocket, Timeout) end).

%% @doc `Transport:accept/1' (ThousandIsland's), as accept/3.
-spec accept(module(), term()) -> {ok, term()} | {error, term()}.
accept(Transport, LSocket) ->
    reclaiming(fun() -> Transport:accept(LSocket) end).

-spec reclaiming(fun(() -> Accepted)) -> Accepted.
reclaiming(Accept) ->
    case Accept() of
        {error, Short} when Short =:= emfile; Short =:= enfile ->
            ok = fin_close:reclaim(),
            Accept();
        Accepted ->
            Accepted
    end.

%% @doc `shutdown(Socket, write)' closes with fin_close and returns
%% `{error, closed}', so that the caller (Cowboy) does not linger itself;
%% what fin_close refuses, and `read' or `read_write', is the transport's.
-spec shutdown(module(), term(), read | write | read_write) -> ok | {error, atom()}.
shutdown(Transport, Socket, write) ->
    case fin_close:close(Socket, options(Transport, Socket)) of
        ok -> {error, closed};
        {ok, _Ref} -> {error, closed};
        {error, closed} = Closed -> Closed;
        {error, _Refused} -> Transport:shutdown(Socket, write)
    end;
shutdown(Transport, Socket, How) ->
    Transport:shutdown(Socket, How).

%% @doc Closes with fin_close, or with the transport where fin_close
%% refuses the socket (a listening socket, `emfile'). Always `ok'.
-spec close(module(), term()) -> ok.
close(Transport, Socket) ->
    case fin_close:close(Socket, options(Transport, Socket)) of
        ok -> ok;
        {ok, _Ref} -> ok;
        {error, closed} -> ok;
        {error, _Refused} -> Transport:close(Socket)
    end.

%% @doc Remembers a listener's fin_close options, for the closes of its
%% connections, until its listen socket closes (fin_close_listeners). While
%% no listener has any (the default), a listener without options costs
%% nothing here.
-spec remember(module(), term(), fin_close:opts()) -> ok.
remember(Transport, LSocket, Opts) ->
    case map_size(Opts) > 0 orelse fin_close_listeners:any() of
        true ->
            case Transport:sockname(LSocket) of
                {ok, {_, Port}} -> fin_close_listeners:remember(LSocket, Port, Opts);
                _ -> ok
            end;
        false ->
            ok
    end.

%% The connection's socket and its listener's options, in the process that
%% made its handshake: the connection's own (in Ranch and ThousandIsland),
%% the one that closes it.
-define(CONNECTION, '$fin_close_listener_options').

%% @doc A handshake's result, once the connection's process has noted its
%% listener's options: found by the connection's local port number (the
%% listener's) here, where the handshake already cost system calls, so
%% that its close needs none.
-spec handshaken(module(), Result) -> Result when Result :: term().
handshaken(Transport, {ok, Socket} = Result) ->
    note_options(Transport, Socket),
    Result;
handshaken(Transport, {ok, Socket, _} = Result) ->
    note_options(Transport, Socket),
    Result;
handshaken(_, Result) ->
    Result.

-spec note_options(module(), term()) -> ok.
note_options(Transport, Socket) ->
    case fin_close_listeners:any() of
        true -> _ = put(?CONNECTION, {Socket, listener_options(Transport, Socket)}), ok;
        false -> ok
    end.

%% The options noted at the handshake; else (a close without one, or in
%% another process) found as the handshake finds them.
-spec options(module(), term()) -> fin_close:opts().
options(Transport, Socket) ->
    case get(?CONNECTION) of
        {Socket, Opts} ->
            _ = erase(?CONNECTION),
            Opts;
        _ ->
            case fin_close_listeners:any() of
                true -> listener_options(Transport, Socket);
                false -> #{}
            end
    end.

%% A connection has the listening socket's local port.
-spec listener_options(module(), term()) -> fin_close:opts().
listener_options(Transport, Socket) ->
    case Transport:sockname(Socket) of
        {ok, {_, Port}} -> fin_close_listeners:options(Port);
        _ -> #{}
    end.
