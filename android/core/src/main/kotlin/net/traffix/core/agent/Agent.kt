package net.traffix.core.agent

import java.time.Instant
import java.time.LocalDateTime
import java.time.ZoneId
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import java.util.concurrent.ThreadLocalRandom
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicLong
import net.traffix.core.egress.EgressPolicy
import net.traffix.core.egress.OwnNetwork
import net.traffix.core.identity.DeviceSigner
import net.traffix.core.identity.SigningException
import net.traffix.core.identity.deviceId
import net.traffix.core.identity.signChallenge
import net.traffix.core.mux.Dispatched
import net.traffix.core.mux.Mux
import net.traffix.core.mux.MuxStream
import net.traffix.core.net.IpAddr
import net.traffix.core.net.SocketAddr
import net.traffix.core.policy.Action
import net.traffix.core.policy.DataUsage
import net.traffix.core.policy.DeviceConditions
import net.traffix.core.policy.ResourceDecision
import net.traffix.core.policy.ResourcePolicy
import net.traffix.core.policy.ResourceSettings
import net.traffix.core.protocol.CONTROL_VERSION
import net.traffix.core.protocol.DecodeResult
import net.traffix.core.protocol.ErrorCode
import net.traffix.core.protocol.Frame
import net.traffix.core.protocol.FrameCodec
import net.traffix.core.protocol.HEADER_LEN
import net.traffix.core.protocol.Handshake
import net.traffix.core.protocol.MAX_DATA_LEN
import net.traffix.core.protocol.MAX_HINTS
import net.traffix.core.protocol.MAX_HINT_LEN
import net.traffix.core.protocol.MAX_STATS_DAYS
import net.traffix.core.protocol.MAX_STATS_MONTHS
import net.traffix.core.protocol.MAX_UNPAIR_REASON_LEN
import net.traffix.core.protocol.MIN_PROTOCOL_VERSION
import net.traffix.core.protocol.NetworkType
import net.traffix.core.protocol.NodeState
import net.traffix.core.protocol.OpenErrReason
import net.traffix.core.protocol.PROTOCOL_VERSION
import net.traffix.core.protocol.ResetReason
import net.traffix.core.protocol.Target
import net.traffix.core.relay.DialResult
import net.traffix.core.relay.Dialer
import net.traffix.core.relay.Resolver
import net.traffix.core.relay.StreamRelay
import net.traffix.core.time.Clock
import net.traffix.core.transport.CloseCodes
import net.traffix.core.transport.TunnelListener
import net.traffix.core.transport.TunnelSocket
import net.traffix.core.transport.TunnelTransport
import net.traffix.core.util.cutUtf8

/**
 * The node agent: holds one tunnel to the server, answers its challenges, reports the owner's
 * resource policy in heartbeats and relays the streams the server opens — the Android twin of
 * the Rust `traffix node` (src/node/mod.rs).
 *
 * Threads: every state change runs on the [scheduler]'s one thread (no locks in the state
 * machine); the transport's reader thread decodes frames and feeds stream frames straight to the
 * multiplexer, posting the rest; each stream is relayed on two threads of [streamPool].
 *
 * The app feeds it the owner's [ResourceSettings], the phone's [DeviceSample] (with metered,
 * roaming, Data Saver and Battery Saver), the radio's byte count ([updateUsage]) and its own
 * networks, and hears [AgentStatus] through the [AgentListener].
 */
class Agent(
    private val config: AgentConfig,
    private val signer: DeviceSigner,
    private val transport: TunnelTransport,
    private val listener: AgentListener,
    settings: ResourceSettings,
    device: DeviceSample,
    usage: DataUsage? = null,
    private val clock: Clock = Clock.SYSTEM,
    private val zone: ZoneId = ZoneId.systemDefault(),
    private val scheduler: Scheduler = ThreadScheduler(),
    random: () -> Double = { ThreadLocalRandom.current().nextDouble() },
    private val streamPool: ExecutorService = newStreamPool(),
    private val resolver: Resolver = Resolver.SYSTEM,
    private val log: AgentLog = AgentLog.NONE,
) {
    // ---- state owned by the scheduler thread ----
    private var phase = Phase.PAIRED
    @Volatile private var settings = settings
    private var device = device
    private var usage: DataUsage = (usage ?: DataUsage(today())).rolledTo(today(), settings.monthStartDay)
    private var decision: ResourceDecision = ResourceDecision.SERVE
    @Volatile private var paired = config.paired
    private var current: Conn? = null
    private var stopping = false
    private var retryTask: Cancellable? = null
    private var pauseCheck: Cancellable? = null
    private var retryAtMillis: Long? = null
    private var lastError: AgentError? = null
    private var vip: String? = null
    private var server: ServerTally? = null
    private val backoff = Backoff(random = random)

    /** The pairing code the device key was made for (its attestation challenge binds it). */
    private var preparedForCode: String? = null

    /** The control-only session open for a request while no tunnel serves ([ControlSession]). */
    private var controlSession: ControlSession? = null

    // ---- shared with relay threads ----
    /** Bytes relayed and not yet folded into [usage]. */
    private val unfolded = AtomicLong(0)

    /** Bytes left before the nearest data cap; crossing zero asks for a decision at once. */
    private val capHeadroom = AtomicLong(Long.MAX_VALUE)
    private val served = AtomicLong(0)
    private val refused = AtomicLong(0)
    private val failed = AtomicLong(0)

    @Volatile private var egress: EgressPolicy =
        EgressPolicy(allowPrivateTargets = config.allowPrivateTargets, blockedPorts = config.blockedPorts)
    private val dialer = Dialer({ egress }, config.dialTimeoutMillis, resolver, clock = clock, socketFactory = config.socketFactory)

    /** The latest snapshot (also delivered to the listener). */
    @Volatile var status: AgentStatus = snapshot()
        private set

    // ---- the app's controls (any thread) ----

    /** Starts connecting (no-op when already running); after a failure it tries again at once. */
    fun start() =
        scheduler.execute {
            if (phase == Phase.PAIRED || phase == Phase.STOPPED || phase == Phase.FAILED) {
                reevaluate()
                connectNow()
            }
        }

    /**
     * Stops for the owner: DRAIN to the server, live streams finish (at most
     * [AgentConfig.drainDeadlineMillis]), then [Phase.STOPPED].
     */
    fun stop() = scheduler.execute { stopNow() }

    /** Reconnects now: the owner pressed retry, or the phone got a network back. */
    fun retryNow() =
        scheduler.execute {
            if (phase == Phase.BACKING_OFF || phase == Phase.FAILED || phase == Phase.STOPPED) connectNow()
        }

    fun updateSettings(new: ResourceSettings) =
        scheduler.execute {
            settings = new
            reevaluate()
            publish()
        }

    fun updateDevice(new: DeviceSample) =
        scheduler.execute {
            val networkBack = device.network == NetworkType.UNKNOWN && new.network != NetworkType.UNKNOWN
            device = new
            reevaluate()
            // A network came back while waiting out a back-off: try now, not in a minute.
            if (networkBack && phase == Phase.BACKING_OFF) connectNow()
            publish()
        }

    /**
     * What the phone's radio really moved today and this month (the app's own UID counters:
     * both directions, all overhead; core `RadioUsageMeter`). From the first call on, this
     * count replaces the agent's relayed payload for the owner's caps, for HEARTBEAT's
     * bytes_today / bytes_month and for [AgentStatus.usage]; between two calls the bytes relayed
     * since the last one are added, so a cap is still noticed between samples (the radio moves
     * at least that much). A cap reached pauses at once and cuts live streams; a new day or
     * month period that clears it brings a paused node back.
     */
    fun updateUsage(radio: DataUsage) =
        scheduler.execute {
            unfolded.set(0)
            usage = radio
            reevaluate()
            publish()
        }

    /** The phone's own addresses, on-link prefixes, gateway and DNS servers (SECURITY.md §1). */
    fun updateOwnNetworks(networks: List<OwnNetwork>) {
        egress = egress.copy(ownNetworks = networks)
    }

    /** Cuts everything at once and frees the threads (the service is being destroyed). */
    fun close() {
        scheduler.execute {
            stopping = true
            controlSession?.cancel("agent closed")
            current?.let { end(it, "agent closed") }
            cancelRetry()
            phase = Phase.STOPPED
            publish()
            scheduler.shutdown()
        }
        streamPool.shutdown()
    }

    // ---- connection life (scheduler thread) ----

    /** Connects at once, forgetting the back-off: the owner asked, or the network came back. */
    private fun connectNow() {
        stopping = false
        backoff.reset()
        cancelRetry()
        pauseCheck?.cancel()
        pauseCheck = null
        connect()
    }

    private fun connect() {
        if (stopping) return
        if (!paired && config.link.code.isEmpty()) {
            fail(AgentError(AgentError.Kind.NOT_PAIRED))
            return
        }
        if (config.link.insecure && !config.allowInsecure) {
            fail(AgentError(AgentError.Kind.INSECURE_LINK))
            return
        }
        if (!paired && preparedForCode != config.link.code) {
            // The Keystore key and its attestation are made before dialling: StrongBox can take
            // seconds, more than the handshake allows. Once per code: retries reuse the key.
            try {
                signer.prepareForPairing(Handshake.attestationChallenge(config.link.pin, config.link.code))
                preparedForCode = config.link.code
            } catch (e: SigningException) {
                fail(AgentError(AgentError.Kind.KEY_UNAVAILABLE, detail = e.message ?: ""))
                return
            }
        }
        val scheme = if (config.link.insecure) "ws" else "wss"
        retryAtMillis = null
        val conn = Conn(clock.nanoTime())
        current = conn
        phase = Phase.CONNECTING
        log.log(LogLevel.DEBUG, "connecting server=${config.link.server} pairing=${!paired}")
        publish()
        conn.handshakeTimer =
            scheduler.schedule(config.handshakeTimeoutMillis, Runnable {
                if (current === conn && !conn.established) end(conn, AgentError(AgentError.Kind.HANDSHAKE_TIMEOUT))
            })
        try {
            conn.socket = transport.open("$scheme://${config.link.server}/v1/tunnel", config.link.pin, conn)
        } catch (e: RuntimeException) {
            end(conn, AgentError(AgentError.Kind.CANNOT_CONNECT, detail = e.message ?: e.javaClass.simpleName))
        }
    }

    /** The tunnel ended for [error]: back off, or [fatal]ly fail (unless stopping). */
    private fun end(conn: Conn, error: AgentError, fatal: Boolean = false) = end(conn, error.toString(), fatal, error = error)

    /**
     * The tunnel is gone: clean up, then back off, stop or fail. [why] is for the log; [error]
     * what the owner is told (a plain string end only happens while stopping or pausing).
     */
    private fun end(
        conn: Conn,
        why: String,
        fatal: Boolean = false,
        paused: Boolean = false,
        error: AgentError = AgentError(AgentError.Kind.CONNECTION_LOST, detail = why),
    ) {
        if (current !== conn) return
        current = null
        conn.handshakeTimer?.cancel()
        conn.heartbeatTimer?.cancel()
        conn.drainTimer?.cancel()
        conn.mux?.close(why)
        conn.socket?.let {
            it.close(CloseCodes.NORMAL, "bye")
            // A socket that cannot flush its close (dead network) must not linger.
            scheduler.schedule(2_000, Runnable { it.cancel() })
        }
        conn.control.closeAll(ControlFailure.TUNNEL_CLOSED, why)
        val lived = TimeUnit.NANOSECONDS.toMillis(clock.nanoTime() - conn.startedNanos)
        foldUsage()
        when {
            stopping -> {
                phase = Phase.STOPPED
                lastError = null
                log.log(LogLevel.INFO, "stopped reason=\"$why\"")
            }
            fatal -> fail(error)
            paused -> {
                phase = Phase.PAUSED
                lastError = null
                backoff.reset()
                log.log(LogLevel.INFO, "tunnel closed while paused reason=\"$why\"")
                schedulePauseCheck()
            }
            else -> {
                lastError = error
                val delay = backoff.failed(conn.established, lived)
                log.log(LogLevel.WARN, "tunnel down reason=\"$why\" lived_ms=$lived retry_in_ms=$delay")
                phase = Phase.BACKING_OFF
                retryAtMillis = clock.wallMillis() + delay
                retryTask = scheduler.schedule(delay, Runnable {
                    retryTask = null
                    if (phase == Phase.BACKING_OFF) connect()
                })
            }
        }
        publish()
    }

    private fun fail(error: AgentError) {
        val why = error.toString()
        current?.let { c ->
            current = null
            c.socket?.cancel()
            c.mux?.close(why)
            c.control.closeAll(ControlFailure.TUNNEL_CLOSED, why)
        }
        phase = Phase.FAILED
        lastError = error
        retryAtMillis = null
        log.log(LogLevel.WARN, "stopped until the owner acts reason=\"$why\"")
        publish()
    }

    private fun cancelRetry() {
        retryTask?.cancel()
        retryTask = null
        retryAtMillis = null
    }

    private fun stopNow() {
        stopping = true
        cancelRetry()
        pauseCheck?.cancel()
        pauseCheck = null
        val conn = current
        if (conn == null || !conn.established) {
            conn?.let { end(it, "stopped") } ?: run {
                phase = Phase.STOPPED
                publish()
            }
            return
        }
        conn.send(Frame.Drain("node stopping", (config.drainDeadlineMillis / 1000).toInt().coerceIn(1, 0xffff)))
        startDrain(conn, "the owner stopped the node")
    }

    /** No new streams; the tunnel ends once the live ones are done (or at the deadline). */
    private fun startDrain(conn: Conn, why: String) {
        if (phase == Phase.DRAINING) return
        phase = Phase.DRAINING
        sendHeartbeat(conn)
        publish()
        if (conn.activeStreams() == 0) {
            end(conn, AgentError(AgentError.Kind.SERVER_DRAINED, detail = why))
            return
        }
        conn.drainTimer =
            scheduler.schedule(config.drainDeadlineMillis, Runnable {
                if (current === conn) end(conn, AgentError(AgentError.Kind.SERVER_DRAINED, detail = "deadline passed: $why"))
            })
    }

    // ---- control requests (docs/protocol.md "Control requests"; any thread) ----

    /**
     * Asks the server for this device's traffic and earnings: the last [days] days (at most
     * 62) and [months] calendar months (at most 24). [callback] runs once, on the agent's
     * thread: the answer, or why there is none (a version 1 server, no answer, unreachable).
     *
     * While serving it asks over the live tunnel; otherwise (paused, backing off, stopped) it
     * opens one short control-only session ([ControlSession]) for this one request. Call it for
     * the owner's action only, never in a loop: the server rate-limits these.
     */
    fun requestHistory(days: Int, months: Int, callback: (StatsResult) -> Unit) =
        scheduler.execute {
            val d = days.coerceIn(0, MAX_STATS_DAYS)
            val m = months.coerceIn(0, MAX_STATS_MONTHS)
            val conn = current?.takeIf { it.established }
            when {
                conn == null ->
                    controlAlone(ControlSession.Request.History(d, m), { r, detail -> callback(StatsResult.Failed(r, detail)) }) { o ->
                        if (o is ControlSession.Outcome.Stats) callback(o.result)
                    }
                conn.version < CONTROL_VERSION -> callback(StatsResult.Failed(ControlFailure.SERVER_TOO_OLD))
                else -> {
                    val id = conn.control.add(callback, null)
                    if (id == null) {
                        callback(StatsResult.Failed(ControlFailure.BUSY))
                    } else {
                        conn.send(Frame.StatsRequest(id, d, m))
                    }
                }
            }
        }

    /**
     * Asks the server to forget this device (the owner's "Unpair"). On success the agent stops,
     * [AgentListener.onUnpaired] tells the app to delete the key, and [callback] gets
     * [UnpairResult.Unpaired]. Over the live tunnel while serving, otherwise on one control-only
     * session: the server knows the device by the key that signs either in.
     */
    fun unpair(reason: String?, callback: (UnpairResult) -> Unit) =
        scheduler.execute {
            val why = reason?.let { cutUtf8(it, MAX_UNPAIR_REASON_LEN) }
            val conn = current?.takeIf { it.established }
            when {
                conn == null ->
                    controlAlone(ControlSession.Request.Unpair(why), { r, detail -> callback(UnpairResult.Failed(r, detail)) }) { o ->
                        if (o is ControlSession.Outcome.Unpaired) {
                            callback(UnpairResult.Unpaired)
                            forgotten()
                        }
                    }
                conn.version < CONTROL_VERSION -> callback(UnpairResult.Failed(ControlFailure.SERVER_TOO_OLD))
                else -> {
                    val id = conn.control.add(null, callback)
                    if (id == null) {
                        callback(UnpairResult.Failed(ControlFailure.BUSY))
                    } else {
                        conn.send(Frame.Unpair(id, why))
                    }
                }
            }
        }

    /**
     * One control-only session for [request] (no serving tunnel is up): [failed] hears why there
     * is no answer, [answered] the answer. One at a time: a second request while one is open is
     * [ControlFailure.BUSY].
     */
    private fun controlAlone(
        request: ControlSession.Request,
        failed: (ControlFailure, String) -> Unit,
        answered: (ControlSession.Outcome) -> Unit,
    ) {
        when {
            !paired -> failed(ControlFailure.NOT_PAIRED, "")
            config.link.insecure && !config.allowInsecure -> failed(ControlFailure.NOT_CONNECTED, "")
            controlSession != null -> failed(ControlFailure.BUSY, "")
            else -> {
                val scheme = if (config.link.insecure) "ws" else "wss"
                val session =
                    ControlSession(
                        "$scheme://${config.link.server}/v1/tunnel", config.link.pin, signer, config.agentName, request,
                        scheduler, CONTROL_TIMEOUT_MILLIS, log,
                    ) { o ->
                        controlSession = null
                        when (o) {
                            is ControlSession.Outcome.Failed -> {
                                failed(o.reason, o.detail)
                                // The admin (or another session) removed the device: forget it, as on the tunnel.
                                if (o.code == ErrorCode.DEVICE_REMOVED) removedByServer(o.detail)
                            }
                            else -> answered(o)
                        }
                    }
                controlSession = session
                session.start(transport)
            }
        }
    }

    /** The server forgot this device on a control-only session: stop for good, the app forgets the key. */
    private fun forgotten() {
        paired = false
        vip = null
        log.log(LogLevel.INFO, "unpaired: the server forgot this device")
        listener.onUnpaired()
        stopping = true
        cancelRetry()
        pauseCheck?.cancel()
        pauseCheck = null
        val conn = current
        if (conn != null) {
            end(conn, "unpaired")
        } else {
            phase = Phase.STOPPED
            lastError = null
            publish()
        }
    }

    /** ERROR 11 on a control-only session: as on the tunnel, the app forgets the key and the node needs the owner. */
    private fun removedByServer(message: String) {
        paired = false
        listener.onUnpaired()
        cancelRetry()
        pauseCheck?.cancel()
        pauseCheck = null
        fail(AgentError(AgentError.Kind.SERVER_REFUSED, ErrorCode.DEVICE_REMOVED, message))
    }

    private fun unpaired(conn: Conn, u: Frame.Unpaired) {
        if (!conn.control.unpaired(u)) {
            violation(conn, "UNPAIRED that answers no request")
            return
        }
        paired = false
        vip = null
        log.log(LogLevel.INFO, "unpaired: the server forgot this device")
        listener.onUnpaired()
        stopping = true
        end(conn, "unpaired")
    }

    // ---- frames (scheduler thread) ----

    private fun onFrame(conn: Conn, frame: Frame) {
        if (current !== conn) return
        when (frame) {
            is Frame.Error -> {
                conn.control.closeAll(ControlFailure.SERVER_ERROR, frame.message)
                if (frame.code == ErrorCode.DEVICE_REMOVED) listener.onUnpaired()
                end(conn, AgentError(AgentError.Kind.SERVER_REFUSED, frame.code, frame.message), fatal = frame.code.isFatal)
            }
            is Frame.Challenge ->
                when {
                    !conn.established && phase == Phase.CONNECTING -> answerFirstChallenge(conn, frame)
                    conn.established -> answerChallenge(conn, frame)
                    else -> violation(conn, "a second CHALLENGE during the handshake")
                }
            is Frame.Welcome ->
                if (phase == Phase.CHALLENGED && !conn.established) welcome(conn, frame) else violation(conn, "unexpected WELCOME")
            is Frame.Open -> if (conn.established) open(conn, frame) else violation(conn, "OPEN before WELCOME")
            is Frame.HeartbeatAck -> ack(conn, frame)
            is Frame.Drain -> if (conn.established) startDrain(conn, "server asked: ${frame.reason ?: "drain"}")
            is Frame.Stats -> conn.control.stats(frame)
            is Frame.Unpaired -> unpaired(conn, frame)
            else -> violation(conn, "unexpected ${frame.name} from the server")
        }
    }

    private fun violation(conn: Conn, why: String) {
        if (current !== conn) return
        log.log(LogLevel.WARN, "protocol violation by the server: $why")
        conn.send(Frame.Error(ErrorCode.PROTOCOL_VIOLATION, why.take(200)))
        end(conn, AgentError(AgentError.Kind.PROTOCOL_VIOLATION, detail = why))
    }

    private fun answerFirstChallenge(conn: Conn, c: Frame.Challenge) {
        val v = c.version
        if (v != null && (v < MIN_PROTOCOL_VERSION || v > PROTOCOL_VERSION)) {
            violation(conn, "server chose protocol $v outside $MIN_PROTOCOL_VERSION..$PROTOCOL_VERSION")
            return
        }
        conn.version = v ?: MIN_PROTOCOL_VERSION
        // The Keystore may fail at any of these (key lost, hardware error): back off, never crash.
        val answer =
            try {
                if (paired) {
                    Frame.Proof(c.nonce, signer.signChallenge(config.link.pin, c.nonce))
                } else {
                    Frame.Pair(
                        code = config.link.code,
                        keyAlg = signer.keyAlg,
                        publicKey = signer.publicKey,
                        nonce = c.nonce,
                        signature = signer.signChallenge(config.link.pin, c.nonce),
                        model = config.device.model?.take(64),
                        os = config.device.os?.take(64),
                        appVersion = config.device.appVersion?.take(64),
                        attestation = signer.attestation(),
                        hints = config.device.emulatorHints
                            .map { h -> h.filter { it.code in 0x21..0x7e }.take(MAX_HINT_LEN) }
                            .filter { it.isNotEmpty() }
                            .distinct()
                            .take(MAX_HINTS),
                    )
                }
            } catch (e: SigningException) {
                end(conn, AgentError(AgentError.Kind.KEY_CANNOT_SIGN, detail = e.message ?: ""))
                return
            }
        conn.send(answer)
        phase = Phase.CHALLENGED
        publish()
    }

    private fun answerChallenge(conn: Conn, c: Frame.Challenge) {
        try {
            conn.send(Frame.Proof(c.nonce, signer.signChallenge(config.link.pin, c.nonce)))
        } catch (e: SigningException) {
            end(conn, AgentError(AgentError.Kind.KEY_CANNOT_SIGN, detail = e.message ?: ""))
        }
    }

    private fun welcome(conn: Conn, w: Frame.Welcome) {
        val ours =
            try {
                signer.deviceId()
            } catch (e: SigningException) {
                end(conn, AgentError(AgentError.Kind.KEY_LOST, detail = e.message ?: ""))
                return
            }
        if (w.deviceId != ours) {
            violation(conn, "WELCOME for another device ${w.deviceId.hex()}")
            return
        }
        conn.established = true
        conn.handshakeTimer?.cancel()
        conn.welcome = w
        conn.upSinceMillis = clock.wallMillis()
        conn.upSinceNanos = clock.nanoTime()
        vip = w.vip.toString()
        lastError = null
        if (!paired) {
            paired = true
            listener.onPaired(w.vip.toString())
        }
        phase = Phase.SERVING
        log.log(LogLevel.INFO, "tunnel up vip=${w.vip} max_streams=${w.maxStreams} heartbeat_s=${w.heartbeatIntervalS}")
        // Our own view of what is reachable: never the server itself (SECURITY.md §1).
        serverEndpoints(conn)
        reevaluate()
        // Paused from the start: the reevaluation said so and closed the tunnel.
        if (current !== conn) return
        sendHeartbeat(conn)
        scheduleHeartbeat(conn)
        publish()
    }

    private fun serverEndpoints(conn: Conn) {
        val host = config.link.host
        val port = config.link.port
        streamPool.execute {
            val addrs =
                try {
                    resolver.resolve(host).map { SocketAddr(it, port) }
                } catch (e: Exception) {
                    IpAddr.parse(host)?.let { listOf(SocketAddr(it, port)) } ?: emptyList()
                }
            if (addrs.isNotEmpty()) egress = egress.copy(serverEndpoints = addrs)
        }
    }

    private fun open(conn: Conn, o: Frame.Open) {
        val mux = conn.mux ?: return
        val w = conn.welcome ?: return
        val cap = minOf(settings.maxStreams.toLong(), w.maxStreams).toInt()
        val s = mux.accept(o.stream, o.window, cap)
        if (s == null) {
            refused.incrementAndGet()
            conn.send(Frame.OpenErr(o.stream, OpenErrReason.NODE_BUSY, "node is at its $cap-stream limit"))
        } else if (phase == Phase.DRAINING) {
            refused.incrementAndGet()
            s.reject(OpenErrReason.DRAINING, "node is draining")
        } else {
            val refusal = ResourcePolicy.admitStream(settings, decision, mux.activeStreams - 1)
            if (refusal != null) {
                refused.incrementAndGet()
                s.reject(refusal, decision.describe())
            } else {
                if (mux.activeStreams == 1) heartbeatBusy(conn)
                try {
                    streamPool.execute { serve(conn, s, o.target, o.probe) }
                } catch (e: java.util.concurrent.RejectedExecutionException) {
                    s.reject(OpenErrReason.INTERNAL, "node is shutting down")
                }
            }
        }
        publish()
    }

    /** Stream thread: dial under the egress policy, then relay. */
    private fun serve(conn: Conn, s: MuxStream, target: Target, probe: Boolean) {
        var answered = false
        try {
            when (val r = if (probe) dialer.dialProbe(target) else dialer.dial(target)) {
                is DialResult.Failed -> {
                    (if (r.reason == OpenErrReason.REFUSED_BY_POLICY) refused else failed).incrementAndGet()
                    // No target in the log: the owner's phone is not told where clients go.
                    log.log(LogLevel.DEBUG, "open refused stream=${s.id} reason=${r.reason.name.lowercase()}")
                    answered = true
                    s.reject(r.reason, r.message)
                }
                is DialResult.Connected -> {
                    served.incrementAndGet()
                    answered = true
                    s.sendOpenOk(r.peer)
                    StreamRelay(r.socket, s, streamPool, config.idleTimeoutMillis, clock, ::counted).run()
                }
            }
        } catch (e: RuntimeException) {
            // A platform surprise (SecurityException without the INTERNET permission, a closed
            // pool): the stream fails, the node carries on.
            val why = "node error: ${e.javaClass.simpleName}"
            log.log(LogLevel.WARN, "stream failed stream=${s.id} error=${e.javaClass.name}")
            if (answered) s.reset(ResetReason.INTERNAL, why) else s.reject(OpenErrReason.INTERNAL, why)
            s.release()
        } finally {
            scheduler.execute { streamEnded(conn) }
        }
    }

    /** Relay threads: count bytes for the owner's caps; crossing a cap asks for a decision now. */
    private fun counted(n: Long) {
        unfolded.addAndGet(n)
        val left = capHeadroom.addAndGet(-n)
        if (left <= 0 && left + n > 0) scheduler.execute { reevaluate() }
    }

    private fun streamEnded(conn: Conn) {
        if (current !== conn) return
        if (phase == Phase.DRAINING && conn.activeStreams() == 0) {
            if (stopping) end(conn, "stopped") else end(conn, AgentError(AgentError.Kind.SERVER_DRAINED))
            return
        }
        reevaluate()
        publish()
    }

    private fun ack(conn: Conn, a: Frame.HeartbeatAck) {
        if (a.seq == conn.sentSeq) {
            val rtt = clock.nanoTime() - conn.sentAtNanos
            conn.mux?.observeRtt(rtt)
            // Reported in the next HEARTBEAT (tag 14): the server's RTT now that nobody pings.
            conn.lastRttMillis = TimeUnit.NANOSECONDS.toMillis(rtt).coerceIn(0, 0xffff_ffffL)
            conn.sentSeq = -1
        }
        if (a.bytesToday != null || a.earnedToday != null) server = ServerTally(a.bytesToday, a.earnedToday, a.currency)
        publish()
    }

    // ---- heartbeats and the resource policy (scheduler thread) ----

    /**
     * The next heartbeat, [delayMillis] from now (default: the interval in force). Heartbeats are
     * the only keepalive: every [Keepalive.intervalS] (busy with live streams, idle without), and
     * the liveness rule is checked at each.
     */
    private fun scheduleHeartbeat(conn: Conn, delayMillis: Long? = null) {
        conn.heartbeatTimer?.cancel()
        val every = Keepalive.intervalS(conn.welcome, conn.activeStreams()) * 1000L
        val delay = delayMillis ?: every
        conn.heartbeatDueNanos = clock.nanoTime() + TimeUnit.MILLISECONDS.toNanos(delay)
        conn.heartbeatTimer =
            scheduler.schedule(delay, Runnable {
                if (current !== conn) return@Runnable
                val silent = TimeUnit.NANOSECONDS.toMillis(clock.nanoTime() - conn.lastInboundNanos)
                val deadAfter = Keepalive.livenessMillis(Keepalive.intervalS(conn.welcome, conn.activeStreams()))
                if (silent >= deadAfter) {
                    end(conn, AgentError(AgentError.Kind.SERVER_SILENT, detail = "${silent / 1000}"))
                    return@Runnable
                }
                reevaluate()
                if (current !== conn) return@Runnable
                sendHeartbeat(conn)
                scheduleHeartbeat(conn)
                publish()
            })
    }

    /** A stream opened on an idle tunnel: the next heartbeat is due one busy interval after the last. */
    private fun heartbeatBusy(conn: Conn) {
        val busy = Keepalive.intervalS(conn.welcome, 1) * 1000L
        val sinceSent = TimeUnit.NANOSECONDS.toMillis(clock.nanoTime() - conn.sentAtNanos)
        val due = (busy - sinceSent).coerceAtLeast(0)
        val pending = TimeUnit.NANOSECONDS.toMillis(conn.heartbeatDueNanos - clock.nanoTime())
        if (pending > due) scheduleHeartbeat(conn, due)
    }

    private fun sendHeartbeat(conn: Conn) {
        if (!conn.established) return
        conn.seq = (conn.seq + 1) and 0xffff_ffffL
        conn.sentSeq = conn.seq
        conn.sentAtNanos = clock.nanoTime()
        val uptime = TimeUnit.NANOSECONDS.toSeconds(clock.nanoTime() - conn.upSinceNanos)
        val hb = ResourcePolicy.heartbeat(conn.seq, settings, decision, conditions(conn.activeStreams()), uptime)
        val sent = hb.copy(rttMs = conn.lastRttMillis)
        conn.send(if (phase == Phase.DRAINING) sent.copy(state = NodeState.DRAINING) else sent)
    }

    private fun localNow(): LocalDateTime = LocalDateTime.ofInstant(Instant.ofEpochMilli(clock.wallMillis()), zone)

    private fun today() = localNow().toLocalDate()

    private fun conditions(active: Int) =
        DeviceConditions(
            network = device.network,
            batteryPct = device.batteryPct,
            charging = device.charging,
            usage = usage,
            now = localNow(),
            activeStreams = active,
            metered = device.isMetered,
            roaming = device.roaming,
            dataSaver = device.dataSaver,
            batterySaver = device.batterySaver,
        )

    private fun foldUsage() {
        usage = usage.rolledTo(today(), settings.monthStartDay).plus(unfolded.getAndSet(0))
        val daily = settings.dailyCapBytes?.let { it - usage.bytesToday } ?: Long.MAX_VALUE
        val monthly = settings.monthlyCapBytes?.let { it - usage.bytesMonth } ?: Long.MAX_VALUE
        capHeadroom.set(minOf(daily, monthly))
    }

    /** Decides serve / drain / pause; a change is reported to the server at once. */
    private fun reevaluate() {
        foldUsage()
        val conn = current
        val active = conn?.activeStreams() ?: 0
        val next = ResourcePolicy.decide(settings, conditions(active), decision)
        val changed = next != decision
        if (changed) log.log(LogLevel.INFO, "policy action=${next.action.name.lowercase()} reasons=\"${next.describe()}\"")
        decision = next
        if (conn == null) {
            // Paused with the tunnel closed: back as soon as the settings allow sharing again.
            if (phase == Phase.PAUSED && !Keepalive.closesTunnel(next)) {
                pauseCheck?.cancel()
                pauseCheck = null
                log.log(LogLevel.INFO, "pause cleared: reconnecting")
                connectNow()
            } else if (changed) {
                publish()
            }
            return
        }
        if (!conn.established) return
        if (next.action == Action.PAUSE && next.reasons.any { it.hard } && active > 0) {
            conn.mux?.resetAll(ResetReason.CANCEL, next.describe())
        }
        if (Keepalive.closesTunnel(next) && phase == Phase.SERVING) {
            pauseTunnel(conn, next)
            return
        }
        if (changed) {
            sendHeartbeat(conn)
            publish()
        }
    }

    /**
     * A hard pause: say so (HEARTBEAT paused with its reason), DRAIN, close the tunnel, and
     * look at the settings again every [Keepalive.PAUSED_RECHECK_MILLIS] (and on every update
     * of the settings or the device) until sharing is allowed again.
     */
    private fun pauseTunnel(conn: Conn, d: ResourceDecision) {
        sendHeartbeat(conn)
        conn.send(Frame.Drain("paused: ${d.describe()}".take(200), 0))
        end(conn, "paused: ${d.describe()}", paused = true)
    }

    private fun schedulePauseCheck() {
        pauseCheck?.cancel()
        pauseCheck =
            scheduler.schedule(Keepalive.PAUSED_RECHECK_MILLIS, Runnable {
                pauseCheck = null
                if (phase != Phase.PAUSED || current != null) return@Runnable
                reevaluate()
                if (phase == Phase.PAUSED && current == null) schedulePauseCheck()
            })
    }

    private fun snapshot(): AgentStatus {
        val conn = current
        return AgentStatus(
            phase = phase,
            decision = decision,
            activeStreams = conn?.activeStreams() ?: 0,
            vip = vip,
            lastError = lastError,
            retryAtMillis = retryAtMillis,
            connectedSinceMillis = conn?.upSinceMillis,
            rttMillis = conn?.mux?.rttNanosSmoothed?.takeIf { it > 0 }?.let { TimeUnit.NANOSECONDS.toMillis(it) },
            usage = usage.plus(unfolded.get()),
            streamsServed = served.get(),
            streamsRefused = refused.get(),
            streamsFailed = failed.get(),
            server = server,
        )
    }

    private fun publish() {
        val s = snapshot()
        status = s
        listener.onStatus(s)
    }

    /** One tunnel attempt: the transport's events for it, and its timers. */
    private inner class Conn(val startedNanos: Long) : TunnelListener {
        @Volatile var socket: TunnelSocket? = null

        /** Created by the reader thread on WELCOME, so every later frame reaches it in order. */
        @Volatile var mux: Mux? = null

        @Volatile var lastInboundNanos: Long = clock.nanoTime()
        var established = false
        var welcome: Frame.Welcome? = null
        var upSinceMillis: Long? = null
        var upSinceNanos = 0L
        var seq = 0L
        var sentSeq = -1L
        var sentAtNanos = 0L
        var lastRttMillis: Long? = null
        var heartbeatDueNanos = 0L
        var handshakeTimer: Cancellable? = null
        var heartbeatTimer: Cancellable? = null
        var drainTimer: Cancellable? = null

        /** The negotiated protocol version (CHALLENGE tag 1). */
        var version = MIN_PROTOCOL_VERSION

        /** Control requests waiting for their answer on this tunnel. */
        val control = ControlRequests(scheduler, CONTROL_TIMEOUT_MILLIS)

        fun activeStreams(): Int = mux?.activeStreams ?: 0

        /** Queues one frame; a refused send means the socket is closing and onClosed follows. */
        fun send(frame: Frame) {
            socket?.send(FrameCodec.encode(frame))
        }

        override fun onOpen(socket: TunnelSocket) {
            this.socket = socket
            // Absent while pairing (docs/protocol.md): the server derives it from PAIR's key.
            val id =
                if (!paired) {
                    null
                } else {
                    try {
                        signer.deviceId()
                    } catch (e: SigningException) {
                        scheduler.execute { end(this, AgentError(AgentError.Kind.KEY_LOST, detail = e.message ?: "")) }
                        return
                    }
                }
            send(
                Frame.Hello(
                    minVersion = MIN_PROTOCOL_VERSION,
                    maxVersion = PROTOCOL_VERSION,
                    deviceId = id,
                    agent = config.agentName.take(64),
                    maxStreams = settings.maxStreams.toLong(),
                    maxInflight = config.mux.ownInflight,
                ),
            )
        }

        override fun onMessage(socket: TunnelSocket, message: ByteArray) {
            lastInboundNanos = clock.nanoTime()
            val frame =
                when (val r = FrameCodec.decode(message)) {
                    is DecodeResult.Err -> {
                        scheduler.execute { violation(this, r.error.toString()) }
                        return
                    }
                    is DecodeResult.Ok -> r.frame
                }
            val m = mux
            if (m == null) {
                if (frame is Frame.Welcome) mux = newMux(frame)
                scheduler.execute { onFrame(this, frame) }
                return
            }
            when (val d = m.dispatch(frame)) {
                is Dispatched.Handled -> {}
                is Dispatched.ForAgent -> scheduler.execute { onFrame(this, d.frame) }
                is Dispatched.Violation -> scheduler.execute { violation(this, d.message) }
            }
        }

        override fun onText(socket: TunnelSocket) {
            scheduler.execute { violation(this, "a text message on the tunnel") }
        }

        override fun onClosed(socket: TunnelSocket, why: String) {
            scheduler.execute {
                end(this, AgentError(if (established) AgentError.Kind.CONNECTION_LOST else AgentError.Kind.CANNOT_CONNECT, detail = why))
            }
        }

        private fun newMux(w: Frame.Welcome): Mux {
            val maxData = (w.maxFrame - HEADER_LEN).coerceIn(1, MAX_DATA_LEN.toLong()).toInt()
            // The server takes a node's max_inflight as at least its own initial window
            // (docs/protocol.md "Connection window"): the budget follows, or its DATA would look
            // like a violation.
            val budget = maxOf(config.mux.ownInflight, minOf(w.initialWindow, 0xffff_ffffL))
            val cfg =
                config.mux.copy(
                    ownInflight = budget,
                    initialWindow = streamWindow(config.mux.initialWindow, budget, minOf(settings.maxStreams.toLong(), w.maxStreams)),
                    peerInflight = minOf(w.maxInflight, config.maxQueuedBytes),
                    maxData = minOf(maxData, config.mux.maxData),
                )
            return Mux(cfg, { f -> send(f) }, clock)
        }
    }

    companion object {
        /** The smallest receive window a stream starts with. */
        const val MIN_STREAM_WINDOW = 16L * 1024

        /**
         * The receive window a new stream starts with: at most its share of half the inbound
         * budget, so streams to targets that never read (a client's way to stall the node) cannot
         * hold the whole connection window and block every other upload; busy streams grow
         * theirs by auto-tuning while the budget allows.
         */
        fun streamWindow(configured: Long, budget: Long, maxStreams: Long): Long =
            minOf(configured, maxOf(MIN_STREAM_WINDOW, budget / (2 * maxStreams.coerceAtLeast(1))))

        /** How long a control request waits for its answer. */
        const val CONTROL_TIMEOUT_MILLIS = 30_000L

        /** Stream threads: daemon, named, created on demand (two per live stream). */
        fun newStreamPool(): ExecutorService {
            val n = AtomicLong(0)
            return Executors.newCachedThreadPool { r ->
                Thread(r, "traffix-stream-${n.incrementAndGet()}").apply { isDaemon = true }
            }
        }
    }
}
