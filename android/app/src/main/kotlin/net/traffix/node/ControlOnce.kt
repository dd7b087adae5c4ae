package net.traffix.node

import android.content.Context
import android.util.Log
import net.traffix.core.agent.Agent
import net.traffix.core.agent.AgentConfig
import net.traffix.core.agent.AgentListener
import net.traffix.core.agent.ControlFailure
import net.traffix.core.agent.DeviceSample
import net.traffix.core.agent.StatsResult
import net.traffix.core.agent.UnpairResult
import net.traffix.core.identity.SigningException
import net.traffix.core.protocol.NetworkType
import net.traffix.core.transport.SocketTransport

/**
 * History and unpair while the node's service does not run (the owner stopped it): the running
 * agent answers them otherwise ([NodeStatus.liveAgent]). A core [Agent] built for this one
 * request and never started has no tunnel, so it asks on one control-only session (core
 * `ControlSession`: HELLO tag 16, the pairing link's pin) and is closed after the answer. It
 * serves nothing, the server does not list it online, and it is never used in a loop: one
 * request, one session.
 */
internal object ControlOnce {
    /** One history request; [callback] runs once, on the agent's thread. */
    fun requestHistory(context: Context, store: SettingsStore, days: Int, months: Int, callback: (StatsResult) -> Unit) {
        val a = agent(context.applicationContext, store)
        if (a == null) {
            callback(StatsResult.Failed(ControlFailure.NOT_PAIRED))
            return
        }
        a.requestHistory(days, months) { r ->
            callback(r)
            a.close()
        }
    }

    /** One unpair request; on success the key and the pairing are forgotten before [callback]'s agent closes. */
    fun unpair(context: Context, store: SettingsStore, callback: (UnpairResult) -> Unit) {
        val a = agent(context.applicationContext, store)
        if (a == null) {
            callback(UnpairResult.Failed(ControlFailure.NOT_PAIRED))
            return
        }
        a.unpair(null) { r ->
            callback(r)
            a.close()
        }
    }

    /** An agent for one request, or null when this phone is not paired or its key is gone. */
    private fun agent(context: Context, store: SettingsStore): Agent? {
        val pairing = store.pairing.value ?: return null
        if (!pairing.paired) return null
        val signer = KeystoreSigner.create(context)
        if (!signer.hasKey()) return null
        return Agent(
            AgentConfig(link = pairing.link, paired = true),
            signer,
            // The process is not bound to a network while the service is stopped: the default one.
            SocketTransport(),
            object : AgentListener {
                /** The server forgot this device (the unpair, or the admin removed it): as the service does. */
                override fun onUnpaired() {
                    try {
                        signer.forget()
                    } catch (e: SigningException) {
                        Log.w(LOG_TAG, "could not delete the device key: ${e.message}")
                    }
                    store.forgetPairing()
                    NodeStatus.notice(R.string.notice_unpaired)
                }
            },
            store.settings.value,
            DeviceSample(NetworkType.UNKNOWN, batteryPct = null, charging = false),
        )
    }

    private const val LOG_TAG = "traffix"
}
