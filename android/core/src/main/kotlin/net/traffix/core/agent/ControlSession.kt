package net.traffix.core.agent

import net.traffix.core.identity.DeviceSigner
import net.traffix.core.identity.SigningException
import net.traffix.core.identity.deviceId
import net.traffix.core.identity.signChallenge
import net.traffix.core.protocol.CONTROL_VERSION
import net.traffix.core.protocol.DecodeResult
import net.traffix.core.protocol.ErrorCode
import net.traffix.core.protocol.Frame
import net.traffix.core.protocol.FrameCodec
import net.traffix.core.protocol.PROTOCOL_VERSION
import net.traffix.core.transport.CloseCodes
import net.traffix.core.transport.TunnelListener
import net.traffix.core.transport.TunnelSocket
import net.traffix.core.transport.TunnelTransport
import net.traffix.core.util.Bytes

/**
 * One control request on a **control-only session** (docs/protocol.md "Control requests", HELLO
 * tag 16 = 1), for when the agent has no serving tunnel: paused, backing off, stopped. The twin
 * of the Rust `traffix node stats` / `unpair` (src/node/control.rs): HELLO (control-only, min
 * version 2, the device id, no streams) → CHALLENGE → PROOF → WELCOME → the request → its
 * answer → close. The server routes nothing to such a session, does not list the device online
 * and does not replace its serving tunnel.
 *
 * One request, one session, one answer: [onDone] runs exactly once on the [scheduler]'s thread,
 * and the whole exchange (handshake included) has [timeoutMillis]. The session uses the agent's
 * own transport, so the same pin and the same network-bound sockets apply. Every method runs
 * on the scheduler thread; the transport's events are posted to it.
 */
internal class ControlSession(
    private val url: String,
    private val pin: Bytes,
    private val signer: DeviceSigner,
    private val agentName: String,
    private val request: Request,
    private val scheduler: Scheduler,
    private val timeoutMillis: Long,
    private val log: AgentLog,
    private val onDone: (Outcome) -> Unit,
) : TunnelListener {
    /** What to ask. */
    sealed class Request {
        data class History(val days: Int, val months: Int) : Request()

        data class Unpair(val reason: String?) : Request()
    }

    /** How the session ended. */
    sealed class Outcome {
        /** The answer to [Request.History]. */
        data class Stats(val result: StatsResult) : Outcome()

        /** The answer to [Request.Unpair]: the server forgot the device. */
        object Unpaired : Outcome()

        /** No answer; [code] is the server's ERROR code when it refused. */
        data class Failed(val reason: ControlFailure, val detail: String = "", val code: ErrorCode? = null) : Outcome()
    }

    private enum class Stage { OPENING, HELLO_SENT, PROVED, ESTABLISHED, DONE }

    private var stage = Stage.OPENING
    private var socket: TunnelSocket? = null
    private var timer: Cancellable? = null

    /** Opens the session; [onDone] follows (at once when the transport refuses to open). */
    fun start(transport: TunnelTransport) {
        timer = scheduler.schedule(timeoutMillis, Runnable { finish(Outcome.Failed(ControlFailure.NO_ANSWER)) })
        log.log(LogLevel.DEBUG, "control session opening request=${kind()}")
        try {
            socket = transport.open(url, pin, this)
        } catch (e: RuntimeException) {
            finish(Outcome.Failed(ControlFailure.UNREACHABLE, e.message ?: e.javaClass.simpleName))
        }
    }

    /** The agent is closing: end without an answer. */
    fun cancel(detail: String) {
        socket?.cancel()
        finish(Outcome.Failed(ControlFailure.TUNNEL_CLOSED, detail))
    }

    private fun kind() = if (request is Request.History) "history" else "unpair"

    // ---- transport events (reader thread → scheduler) ----

    override fun onOpen(socket: TunnelSocket) {
        scheduler.execute { opened(socket) }
    }

    override fun onMessage(socket: TunnelSocket, message: ByteArray) {
        when (val r = FrameCodec.decode(message)) {
            is DecodeResult.Err -> scheduler.execute { violation("undecodable frame: ${r.error}") }
            is DecodeResult.Ok -> scheduler.execute { onFrame(r.frame) }
        }
    }

    override fun onText(socket: TunnelSocket) {
        scheduler.execute { violation("a text message") }
    }

    override fun onClosed(socket: TunnelSocket, why: String) {
        scheduler.execute {
            // Before WELCOME the server was not reached (or refused without an ERROR); after it,
            // the session ended before the answer.
            val reason = if (stage == Stage.ESTABLISHED) ControlFailure.TUNNEL_CLOSED else ControlFailure.UNREACHABLE
            finish(Outcome.Failed(reason, why))
        }
    }

    // ---- the exchange (scheduler thread) ----

    private fun opened(s: TunnelSocket) {
        if (stage != Stage.OPENING) return
        socket = s
        val id =
            try {
                signer.deviceId()
            } catch (e: SigningException) {
                finish(Outcome.Failed(ControlFailure.KEY_UNAVAILABLE, e.message ?: ""))
                return
            }
        send(
            Frame.Hello(
                // A version 1 server refuses min_version 2 with ERROR 1 instead of taking this for
                // a serving tunnel that replaces the device's other one.
                minVersion = CONTROL_VERSION,
                maxVersion = PROTOCOL_VERSION,
                deviceId = id,
                agent = agentName.take(64),
                maxStreams = 0,
                controlOnly = true,
            ),
        )
        stage = Stage.HELLO_SENT
    }

    private fun onFrame(frame: Frame) {
        if (stage == Stage.DONE) return
        when (frame) {
            is Frame.Error -> {
                val reason = if (frame.code == ErrorCode.VERSION_UNSUPPORTED) ControlFailure.SERVER_TOO_OLD else ControlFailure.SERVER_ERROR
                log.log(LogLevel.INFO, "control session refused code=${frame.code.name.lowercase()}")
                finish(Outcome.Failed(reason, frame.message, frame.code))
            }
            is Frame.Challenge ->
                when (stage) {
                    Stage.HELLO_SENT -> {
                        val v = frame.version
                        if (v == null || v < CONTROL_VERSION || v > PROTOCOL_VERSION) {
                            violation("server chose protocol $v for a control-only session")
                            return
                        }
                        prove(frame)
                        stage = Stage.PROVED
                    }
                    // A periodic challenge (sessions are shorter than its interval, but answer it).
                    Stage.ESTABLISHED -> prove(frame)
                    else -> violation("unexpected CHALLENGE")
                }
            is Frame.Welcome -> {
                if (stage != Stage.PROVED) {
                    violation("unexpected WELCOME")
                    return
                }
                val ours =
                    try {
                        signer.deviceId()
                    } catch (e: SigningException) {
                        finish(Outcome.Failed(ControlFailure.KEY_UNAVAILABLE, e.message ?: ""))
                        return
                    }
                if (frame.deviceId != ours) {
                    violation("WELCOME for another device")
                    return
                }
                stage = Stage.ESTABLISHED
                send(
                    when (request) {
                        is Request.History -> Frame.StatsRequest(REQUEST_ID, request.days, request.months)
                        is Request.Unpair -> Frame.Unpair(REQUEST_ID, request.reason)
                    },
                )
            }
            is Frame.Stats ->
                if (stage == Stage.ESTABLISHED && request is Request.History && frame.requestId == REQUEST_ID) {
                    finish(Outcome.Stats(ControlRequests.result(frame)))
                }
            is Frame.Unpaired ->
                if (stage == Stage.ESTABLISHED && request is Request.Unpair && frame.requestId == REQUEST_ID) {
                    finish(Outcome.Unpaired)
                }
            // Nothing to answer on a session that serves nothing.
            is Frame.HeartbeatAck, is Frame.Drain -> {}
            else -> violation("unexpected ${frame.name} on a control-only session")
        }
    }

    private fun prove(c: Frame.Challenge) {
        try {
            send(Frame.Proof(c.nonce, signer.signChallenge(pin, c.nonce)))
        } catch (e: SigningException) {
            finish(Outcome.Failed(ControlFailure.KEY_UNAVAILABLE, e.message ?: ""))
        }
    }

    private fun violation(why: String) {
        if (stage == Stage.DONE) return
        log.log(LogLevel.WARN, "control session: protocol violation by the server: $why")
        send(Frame.Error(ErrorCode.PROTOCOL_VIOLATION, why.take(200)))
        finish(Outcome.Failed(ControlFailure.BAD_ANSWER, why))
    }

    private fun send(frame: Frame) {
        socket?.send(FrameCodec.encode(frame))
    }

    private fun finish(outcome: Outcome) {
        if (stage == Stage.DONE) return
        stage = Stage.DONE
        timer?.cancel()
        socket?.let {
            it.close(CloseCodes.NORMAL, "bye")
            // A socket that cannot flush its close (dead network) must not linger.
            scheduler.schedule(2_000, Runnable { it.cancel() })
        }
        val what =
            when (outcome) {
                is Outcome.Failed -> "failed reason=${outcome.reason.name.lowercase()}"
                else -> "answered"
            }
        log.log(LogLevel.INFO, "control session ended request=${kind()} $what")
        onDone(outcome)
    }

    companion object {
        /** The one request of a session. */
        const val REQUEST_ID = 1L
    }
}
