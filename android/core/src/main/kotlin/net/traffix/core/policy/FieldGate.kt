package net.traffix.core.policy

import net.traffix.core.protocol.NetworkType

/**
 * The phone knows more than the agent's [net.traffix.core.agent.DeviceSample] carries today:
 * whether the network is metered or roaming, Data Saver, Battery Saver, and what the radio
 * really moved (the app's own `TrafficStats` counters, both directions with all overhead, where
 * the agent counts relayed payload once). Until the agent takes those facts itself, the app
 * holds the agent stopped — a drain, then no tunnel — while a reason only the phone can see
 * applies, and starts it again once none does.
 */
object FieldGate {
    /**
     * The decision with everything the phone knows ([phone], usage as the radio counts it)
     * when it pauses for a reason the agent cannot see from its transport type and its own
     * relayed count ([agentUsage]); null when the agent's own decision is enough.
     */
    fun hold(settings: ResourceSettings, phone: DeviceConditions, agentUsage: DataUsage, previous: ResourceDecision? = null): ResourceDecision? {
        val full = ResourcePolicy.decide(settings, phone, previous)
        if (full.action == Action.SERVE) return null
        val agentView =
            phone.copy(
                usage = agentUsage,
                metered = phone.network != NetworkType.WIFI && phone.network != NetworkType.ETHERNET,
                roaming = false,
                dataSaver = false,
                batterySaver = false,
            )
        val agentReasons = ResourcePolicy.decide(settings, agentView, previous).reasons
        return if ((full.reasons - agentReasons).isEmpty()) null else full
    }
}
