%% @private
%% @doc The one place that knows how OTP's `ssl' is built inside: what an
%% `sslsocket' holds, how its connection process is asked something, and
%% how its sender is made to send `close_notify'. OTP offers no public way to
%% reach the TCP socket under a TLS connection, nor to send `close_notify'
%% without also shutting that socket down for reading: `ssl:shutdown(S,
%% read_write)' does both, and Linux resets a connection that gets more data
%% after our FIN once it is shut for reading, which an uploading client does.
%%
%% Known to hold on OTP 25 (ssl 10.8) and OTP 27 (ssl 11.2); `make test' and
%% `make test-otp27' run the TLS suite on both, and its `shape_is_known' case
%% fails first should a release change what is used here. A socket of any
%% other shape gives `{error, enotsup}' and is not touched.
-module(fin_close_tls).

-export([socket/1]).
-export([claim/1]).
-export([release/1]).
-export([close_notify/2]).
-export([stop/2]).

%% take/1 and release/1 run funs in the TLS process that always throw, on
%% purpose (see take/1).
-dialyzer({nowarn_function, [take/1, release/1]}).

%% The TLS connection process, asked through sys (any gen_statem answers),
%% answers at once unless it waits on its sender (a key update, a
%% renegotiation), which waits on a peer that does not read.
-define(CLAIM_TIMEOUT, 1000).
%% Set in the connection process's dictionary by the close that took it.
-define(CLAIMED, '$fin_close_claimed').

%% @doc The TCP socket under an `sslsocket', or why there is none.
-spec socket(term()) -> {ok, gen_tcp:socket()} | {error, enotconn | eprototype | enotsup}.
socket({sslsocket, {gen_tcp, Tcp, tls_connection, _}, [Receiver, Sender]})
  when is_pid(Receiver), is_pid(Sender) ->
    {ok, Tcp};
socket({sslsocket, nil, {dtls, _Config}}) ->
    {error, eprototype};
socket({sslsocket, nil, {Listen, _Config}}) when is_port(Listen); is_tuple(Listen) ->
    {error, enotconn};
socket({sslsocket, {gen_udp, _, _}, _}) ->
    %% DTLS.
    {error, eprototype};
socket(_) ->
    {error, enotsup}.

%% @doc Takes the connection for one close: suspends its TLS process
%% (`sys:suspend/2': it then handles nothing but system messages) and marks
%% it taken, in the process itself (a `sys:replace_state/3' fun that leaves
%% the state as it is). Of several callers, the first gets `{ok, StateName}'
%% (`connection' once the handshake is done), and must {@link release/1} it
%% once its TCP socket is closed: until then the TLS process neither
%% re-activates the socket (so the caller can make it passive), nor closes
%% it itself when its owner exits or `ssl:close/1' is called; all that
%% waits and then finds the socket closed. The others, and any caller
%% when the process is gone, get `{error, closed}'; `{error, timeout}' when
%% the process did not answer within a second (it waits on its sender, which
%% waits on a peer that does not read): the socket is then left as it was.
-spec claim(term()) -> {ok, atom()} | {error, closed | timeout}.
claim({sslsocket, _, [Receiver | _]}) ->
    try sys:suspend(Receiver, ?CLAIM_TIMEOUT) of
        ok -> take(Receiver)
    catch
        exit:{timeout, _} ->
            %% The suspension may still come: a resume queued behind it
            %% undoes it (system messages are taken in order).
            _ = spawn(fun() -> release(Receiver) end),
            {error, timeout};
        exit:_ ->
            {error, closed}
    end.

%% The mark runs in the TLS process as a sys:replace_state/3 fun that
%% throws once it has sent its answer: sys then keeps the state as it was
%% and replies with a small error, where a fun returning the state would
%% have the process's whole state (tens of kilobytes) copied to the caller
%% on every close.
-spec take(pid()) -> {ok, atom()} | {error, closed}.
take(Receiver) ->
    Alias = alias([reply]),
    Mark = fun({StateName, _}) ->
                   Alias ! {Alias, mark(StateName)},
                   throw(?MODULE)
           end,
    Taken = try sys:replace_state(Receiver, Mark, ?CLAIM_TIMEOUT) of
                _ -> _ = unalias(Alias), gone
            catch
                error:{callback_failed, _, {throw, ?MODULE}} -> receive {Alias, Result} -> Result end;
                _:_ -> _ = unalias(Alias), gone
            end,
    case Taken of
        {ok, _} = Taken ->
            Taken;
        claimed ->
            %% Another close took it, and resumes it when done.
            {error, closed};
        Done when Done =:= released; Done =:= gone ->
            %% Its close is done (the process is about to end), or the
            %% process is gone: the suspension is ours to undo.
            release(Receiver),
            {error, closed}
    end.

%% Runs in the TLS process.
-spec mark(atom()) -> {ok, atom()} | claimed | released.
mark(StateName) ->
    case get(?CLAIMED) of
        undefined -> put(?CLAIMED, claimed), {ok, StateName};
        Claimed -> Claimed
    end.

%% @doc Lets the TLS process of a claimed connection run again, once its
%% TCP socket is closed. Marked `released' first, so that a close coming
%% after (whose suspension would otherwise outlast this resume) undoes its
%% own suspension.
-spec release(term()) -> ok.
release({sslsocket, _, [Receiver | _]}) ->
    Released = fun(_) -> put(?CLAIMED, released), throw(?MODULE) end,
    try sys:replace_state(Receiver, Released, infinity) of
        _ -> ok
    catch
        %% The fun's throw, as in take/1.
        error:{callback_failed, _, {throw, ?MODULE}} -> ok;
        %% The process is gone.
        exit:_ -> ok
    end,
    release(Receiver);
release(Receiver) when is_pid(Receiver) ->
    try sys:resume(Receiver, infinity) of
        _ -> ok
    catch
        %% The process is gone, and with it its suspension.
        exit:_ -> ok
    end.

%% @doc Makes the connection's sender send a warning `close_notify' after
%% everything it was given before, and waits until it has handed it to the
%% TCP socket: `ok', or `{error, Reason}' if the sender is gone or did not
%% within `Timeout' (it waits while the socket's output queue is over its
%% high watermark, for as long as the peer does not read). The alert is made
%% by the running ssl's own decoder, so it has that release's record shape.
-spec close_notify(term(), timeout()) -> ok | {error, term()}.
close_notify({sslsocket, _, [_, Sender]}, Timeout) ->
    [CloseNotify] = ssl_alert:decode(<<1, 0>>),
    try gen_statem:call(Sender, {ack_alert, CloseNotify}, Timeout) of
        ok -> ok;
        Other -> {error, Other}
    catch
        exit:{Reason, _} -> {error, Reason}
    end.

%% @doc Ends the connection process once its TCP socket was closed under it
%% and it was released, without a log line or a second alert on the wire.
%% A port's close already does (the process gets the port's `EXIT' and
%% stops with `{shutdown, transport_closed}'). A `{inet_backend, socket}'
%% socket tells it nothing: during the handshake it is told as its
%% transport would (the close tag of `cb_info', which it takes as the
%% peer's close), after it through `ssl:close/1', whose close_notify finds
%% the socket closed.
-spec stop(term(), atom()) -> ok.
stop({sslsocket, {gen_tcp, Tcp, _, _}, _}, _) when is_port(Tcp) ->
    ok;
stop(Ssl, connection) ->
    try ssl:close(Ssl) of
        _ -> ok
    catch
        %% The process ended otherwise meanwhile, which is what was asked.
        exit:_ -> ok
    end;
stop({sslsocket, {gen_tcp, Tcp, _, _}, [Receiver | _]}, _Handshake) ->
    Receiver ! {tcp_closed, Tcp},
    ok.
