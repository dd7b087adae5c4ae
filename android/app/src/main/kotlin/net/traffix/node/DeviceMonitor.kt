package net.traffix.node

import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.net.ConnectivityManager
import android.net.LinkProperties
import android.net.Network
import android.net.NetworkCapabilities
import android.net.NetworkRequest
import android.os.BatteryManager
import android.os.Handler
import android.os.Looper
import android.os.PowerManager
import androidx.core.content.ContextCompat
import java.net.InetAddress
import net.traffix.core.agent.DeviceSample
import net.traffix.core.egress.OwnNetwork
import net.traffix.core.net.IpAddr
import net.traffix.core.protocol.NetworkType

/**
 * The default network itself (the one the node is bound to), whether it is metered or roaming
 * (`NET_CAPABILITY_NOT_METERED` / `NET_CAPABILITY_NOT_ROAMING` absent), Data Saver for this app
 * and Battery Saver. All but the network also travel in [DeviceSample].
 */
data class PhoneFacts(
    val network: Network?,
    val metered: Boolean,
    val roaming: Boolean,
    val dataSaver: Boolean,
    val batterySaver: Boolean,
)

/**
 * The phone's facts the core's policies need, pushed when they change:
 * - [DeviceSample] (battery level, charging, the default network's type, metered, roaming, Data
 *   Saver, Battery Saver) for the agent's ResourcePolicy;
 * - [PhoneFacts] (the default network with its costs) for binding the process to it;
 * - the phone's own networks — every interface's addresses with their prefixes (the on-link
 *   IPv6 prefixes too), gateways and DNS servers — for the egress policy (SECURITY.md §1).
 *
 * It decides nothing: Wi-Fi only, floors and caps are the core's. Callbacks arrive on the main
 * thread; [start] and [stop] are called there too.
 */
class DeviceMonitor(
    context: Context,
    private val onSample: (DeviceSample) -> Unit,
    private val onOwnNetworks: (List<OwnNetwork>) -> Unit,
    private val onFacts: (PhoneFacts) -> Unit,
) {
    private val context = context.applicationContext
    private val connectivity = context.getSystemService(ConnectivityManager::class.java)
    private val batteryManager = context.getSystemService(BatteryManager::class.java)
    private val power = context.getSystemService(PowerManager::class.java)
    private var metered = true
    private var roaming = false
    private val main = Handler(Looper.getMainLooper())

    private var batteryPct: Int? = null
    private var charging = false
    private var type = NetworkType.UNKNOWN
    private var defaultNetwork: Network? = null

    /** Link properties of every network the phone is on (Wi-Fi and cellular may both be up). */
    private val links = HashMap<Network, List<OwnNetwork>>()
    private var started = false

    var sample: DeviceSample = DeviceSample(NetworkType.UNKNOWN, null, false)
        private set

    var ownNetworks: List<OwnNetwork> = emptyList()
        private set

    var facts: PhoneFacts = PhoneFacts(null, metered = true, roaming = false, dataSaver = false, batterySaver = false)
        private set

    /** Data Saver and Battery Saver switched by the owner. */
    private val saverReceiver =
        object : BroadcastReceiver() {
            override fun onReceive(context: Context, intent: Intent) {
                publishFacts()
                publishSample()
            }
        }

    private val batteryReceiver =
        object : BroadcastReceiver() {
            override fun onReceive(context: Context, intent: Intent) {
                readBattery(intent)
                publishSample()
            }
        }

    /** The default network: its type is what "Wi-Fi only" is judged on. */
    private val defaultCallback =
        object : ConnectivityManager.NetworkCallback() {
            override fun onCapabilitiesChanged(network: Network, networkCapabilities: NetworkCapabilities) {
                defaultNetwork = network
                type = typeOf(networkCapabilities)
                readCosts(networkCapabilities)
                publishFacts()
                publishSample()
            }

            override fun onLost(network: Network) {
                if (network == defaultNetwork) {
                    defaultNetwork = null
                    type = NetworkType.UNKNOWN
                    metered = true
                    roaming = false
                    publishFacts()
                    publishSample()
                }
            }
        }

    /** Every network, VPNs and networks without internet included: all are the phone's own. */
    private val allCallback =
        object : ConnectivityManager.NetworkCallback() {
            override fun onLinkPropertiesChanged(network: Network, linkProperties: LinkProperties) {
                links[network] = ownNetworksOf(linkProperties)
                publishOwnNetworks()
            }

            override fun onLost(network: Network) {
                if (links.remove(network) != null) publishOwnNetworks()
            }
        }

    /** Registers the receivers; [sample] and [ownNetworks] hold the current state on return. */
    fun start() {
        if (started) return
        started = true
        // ACTION_BATTERY_CHANGED is sticky: registering returns the current state at once.
        ContextCompat.registerReceiver(
            context,
            batteryReceiver,
            IntentFilter(Intent.ACTION_BATTERY_CHANGED),
            ContextCompat.RECEIVER_NOT_EXPORTED,
        )?.let { readBattery(it) }
        connectivity.activeNetwork?.let { net ->
            defaultNetwork = net
            val caps = connectivity.getNetworkCapabilities(net)
            type = caps?.let(::typeOf) ?: NetworkType.UNKNOWN
            caps?.let { readCosts(it) }
            connectivity.getLinkProperties(net)?.let { links[net] = ownNetworksOf(it) }
        }
        facts = currentFacts()
        sample = sampleOf(facts)
        ContextCompat.registerReceiver(
            context,
            saverReceiver,
            IntentFilter().apply {
                addAction(ConnectivityManager.ACTION_RESTRICT_BACKGROUND_CHANGED)
                addAction(PowerManager.ACTION_POWER_SAVE_MODE_CHANGED)
            },
            ContextCompat.RECEIVER_NOT_EXPORTED,
        )
        ownNetworks = links.values.flatten().distinct()
        connectivity.registerDefaultNetworkCallback(defaultCallback, main)
        val everyNetwork =
            NetworkRequest.Builder()
                .removeCapability(NetworkCapabilities.NET_CAPABILITY_NOT_VPN)
                .removeCapability(NetworkCapabilities.NET_CAPABILITY_INTERNET)
                .build()
        connectivity.registerNetworkCallback(everyNetwork, allCallback, main)
    }

    fun stop() {
        if (!started) return
        started = false
        context.unregisterReceiver(batteryReceiver)
        context.unregisterReceiver(saverReceiver)
        connectivity.unregisterNetworkCallback(defaultCallback)
        connectivity.unregisterNetworkCallback(allCallback)
    }

    private fun readBattery(intent: Intent) {
        val present = intent.getBooleanExtra(BatteryManager.EXTRA_PRESENT, true)
        val level = intent.getIntExtra(BatteryManager.EXTRA_LEVEL, -1)
        val scale = intent.getIntExtra(BatteryManager.EXTRA_SCALE, -1)
        batteryPct =
            when {
                !present -> null // mains-powered: the core treats it as charging
                level >= 0 && scale > 0 -> (level * 100 / scale).coerceIn(0, 100)
                else -> batteryManager.getIntProperty(BatteryManager.BATTERY_PROPERTY_CAPACITY).takeIf { it in 0..100 }
            }
        // Plugged in counts as charging even when the phone holds at 80 % or is full: the owner's
        // "charging only" means "on the charger".
        val plugged = intent.getIntExtra(BatteryManager.EXTRA_PLUGGED, 0) != 0
        val status = intent.getIntExtra(BatteryManager.EXTRA_STATUS, BatteryManager.BATTERY_STATUS_UNKNOWN)
        charging = plugged || status == BatteryManager.BATTERY_STATUS_CHARGING || status == BatteryManager.BATTERY_STATUS_FULL
    }

    private fun sampleOf(f: PhoneFacts) =
        DeviceSample(
            type,
            batteryPct,
            charging,
            metered = f.metered,
            roaming = f.roaming,
            dataSaver = f.dataSaver,
            batterySaver = f.batterySaver,
        )

    /** After [publishFacts]: the sample carries the facts. */
    private fun publishSample() {
        val next = sampleOf(facts)
        if (next == sample) return // battery broadcasts repeat for voltage and temperature
        sample = next
        if (started) onSample(next)
    }

    /** A hotspot is Wi-Fi without NOT_METERED; a roaming network lacks NOT_ROAMING. */
    private fun readCosts(caps: NetworkCapabilities) {
        metered = !caps.hasCapability(NetworkCapabilities.NET_CAPABILITY_NOT_METERED)
        roaming = !caps.hasCapability(NetworkCapabilities.NET_CAPABILITY_NOT_ROAMING)
    }

    private fun currentFacts() =
        PhoneFacts(
            network = defaultNetwork,
            metered = metered,
            roaming = roaming,
            // Only "enabled" restricts this app; whitelisted (the owner exempted it) and disabled do not.
            dataSaver = connectivity.restrictBackgroundStatus == ConnectivityManager.RESTRICT_BACKGROUND_STATUS_ENABLED,
            batterySaver = power.isPowerSaveMode,
        )

    private fun publishFacts() {
        val next = currentFacts()
        if (next == facts) return
        facts = next
        if (started) onFacts(next)
    }

    private fun publishOwnNetworks() {
        val next = links.values.flatten().distinct()
        if (next == ownNetworks) return
        ownNetworks = next
        if (started) onOwnNetworks(next)
    }

    private companion object {
        /**
         * Cellular wins over Wi-Fi when a network has both (a VPN over both): "Wi-Fi only" exists
         * to spare the owner's mobile data.
         */
        fun typeOf(caps: NetworkCapabilities): NetworkType =
            when {
                caps.hasTransport(NetworkCapabilities.TRANSPORT_CELLULAR) -> NetworkType.CELLULAR
                caps.hasTransport(NetworkCapabilities.TRANSPORT_WIFI) -> NetworkType.WIFI
                caps.hasTransport(NetworkCapabilities.TRANSPORT_ETHERNET) -> NetworkType.ETHERNET
                else -> NetworkType.UNKNOWN
            }

        /** Addresses with their prefix (the on-link network), gateways and DNS servers as single hosts. */
        fun ownNetworksOf(lp: LinkProperties): List<OwnNetwork> {
            val out = ArrayList<OwnNetwork>()
            for (la in lp.linkAddresses) out.add(OwnNetwork(ip(la.address), la.prefixLength))
            for (route in lp.routes) {
                val gw = route.gateway
                if (route.hasGateway() && gw != null) out.add(host(gw))
            }
            for (dns in lp.dnsServers) out.add(host(dns))
            return out.distinct()
        }

        private fun ip(a: InetAddress): IpAddr = IpAddr.fromBytes(a.address)

        private fun host(a: InetAddress): OwnNetwork = OwnNetwork(ip(a), a.address.size * 8)
    }
}
