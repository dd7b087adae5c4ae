package net.traffix.node

import android.Manifest
import android.app.Notification
import android.app.PendingIntent
import android.content.Context
import android.content.Intent
import android.content.pm.PackageManager
import android.content.pm.ServiceInfo
import android.os.Build
import android.util.Log
import androidx.core.app.NotificationChannelCompat
import androidx.core.app.NotificationCompat
import androidx.core.app.NotificationManagerCompat
import androidx.core.app.ServiceCompat
import androidx.core.content.ContextCompat
import androidx.lifecycle.LifecycleService
import androidx.lifecycle.lifecycleScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.conflate
import kotlinx.coroutines.flow.distinctUntilChanged
import kotlinx.coroutines.flow.drop
import kotlinx.coroutines.flow.filterNotNull
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.launch
import net.traffix.core.agent.Agent
import net.traffix.core.agent.AgentConfig
import net.traffix.core.agent.AgentListener
import net.traffix.core.agent.AgentStatus
import net.traffix.core.agent.DeviceInfo
import net.traffix.core.agent.LogLevel
import net.traffix.core.agent.Phase
import net.traffix.core.identity.EmulatorHints
import net.traffix.core.identity.SigningException
import net.traffix.core.policy.DataUsage
import net.traffix.core.transport.OkHttpTransport
import net.traffix.node.ui.MainActivity

/**
 * What the screens observe: the agent's latest status, whether the service runs, and why it
 * could not (no pairing, key lost). One per process; written by [NodeService] only.
 */
object NodeStatus {
    private val _agent = MutableStateFlow<AgentStatus?>(null)
    val agent: StateFlow<AgentStatus?> = _agent.asStateFlow()

    private val _running = MutableStateFlow(false)
    val running: StateFlow<Boolean> = _running.asStateFlow()

    private val _notice = MutableStateFlow<String?>(null)
    val notice: StateFlow<String?> = _notice.asStateFlow()

    internal fun publish(status: AgentStatus) {
        _agent.value = status
    }

    internal fun running(on: Boolean) {
        _running.value = on
    }

    internal fun notice(text: String?) {
        _notice.value = text
    }

    /**
     * The running agent, for the history screen's control requests (history, unpair); null
     * while the service does not run an agent.
     */
    @Volatile
    var liveAgent: Agent? = null
        internal set
}

/**
 * The node: a foreground service of type specialUse (an exit node, not a VpnService; `dataSync`
 * would be time-limited and may not start from boot on Android 15) that owns one core [Agent].
 *
 * Thin (STYLE.md §4.2): it goes foreground, builds the agent from the stored pairing and
 * settings, feeds it the [DeviceMonitor]'s samples and own networks, mirrors its status into
 * [NodeStatus] and the notification, and persists what the agent reports (usage, paired).
 * Connecting, back-off, serve/drain/pause are the agent's.
 */
class NodeService : LifecycleService() {
    private lateinit var store: SettingsStore
    private lateinit var monitor: DeviceMonitor
    private var agent: Agent? = null

    /** The listener of [agent]; a replaced agent's late events are ignored. Read on the agent's thread. */
    @Volatile private var events: Events? = null

    /** The owner wants the node running; false after Stop, so STOPPED ends the service. */
    private var wanted = false
    private var savedUsage: DataUsage? = null

    override fun onCreate() {
        super.onCreate()
        store = SettingsStore.get(this)
        NotificationManagerCompat.from(this).createNotificationChannel(
            NotificationChannelCompat.Builder(CHANNEL, NotificationManagerCompat.IMPORTANCE_LOW)
                .setName(getString(R.string.channel_name))
                .setDescription(getString(R.string.channel_description))
                .setShowBadge(false)
                .build(),
        )
        monitor =
            DeviceMonitor(
                this,
                onSample = { agent?.updateDevice(it) },
                onOwnNetworks = { agent?.updateOwnNetworks(it) },
            )
        monitor.start()
        NodeStatus.running(true)

        lifecycleScope.launch { store.settings.collect { agent?.updateSettings(it) } }
        // A new pairing while running: a new agent with the new link (and key).
        lifecycleScope.launch {
            store.pairing.map { it?.link }.distinctUntilChanged().drop(1).collect { replaceAgent() }
        }
        // The notification and the saved counters, at most every NOTIFY_INTERVAL_MS.
        lifecycleScope.launch {
            NodeStatus.agent.filterNotNull().conflate().collect { s ->
                if (events != null) notify(s)
                if (s.usage != savedUsage) {
                    store.saveUsage(s.usage)
                    savedUsage = s.usage
                }
                delay(NOTIFY_INTERVAL_MS)
            }
        }
    }

    override fun onStartCommand(intent: Intent?, flags: Int, startId: Int): Int {
        super.onStartCommand(intent, flags, startId)
        when (intent?.action) {
            ACTION_STOP -> requestStop()
            // START, RETRY, or a restart by the system after it killed the process (null intent).
            else -> {
                // startForegroundService() requires startForeground() soon, even if we then stop.
                if (!goForeground()) {
                    stopSelf()
                    return START_NOT_STICKY
                }
                val running = agent
                if (intent?.action == ACTION_RETRY && running != null) {
                    wanted = true
                    running.retryNow()
                } else {
                    startAgent()
                }
            }
        }
        return START_STICKY
    }

    override fun onDestroy() {
        NodeStatus.liveAgent = null
        agent?.let {
            store.saveUsage(it.status.usage)
            it.close() // its STOPPED reaches NodeStatus through the still-current listener
        }
        agent = null
        monitor.stop()
        NodeStatus.running(false)
        super.onDestroy()
    }

    private fun startAgent() {
        wanted = true
        store.ownerWantsRunning = true
        agent?.let {
            it.start() // no-op unless ready or stopped
            return
        }
        val built = buildAgent()
        if (built == null) {
            finish()
            return
        }
        agent = built
        NodeStatus.liveAgent = built
        built.start()
    }

    private fun requestStop() {
        wanted = false
        store.ownerWantsRunning = false
        val a = agent
        if (a == null) {
            finish()
            return
        }
        a.stop() // drains; STOPPED ends the service (Events.onStatus)
        // Should the agent never report STOPPED, do not linger in the foreground.
        lifecycleScope.launch {
            delay(STOP_GRACE_MS)
            if (!wanted) finish()
        }
    }

    private fun replaceAgent() {
        events = null
        NodeStatus.liveAgent = null
        agent?.let {
            store.saveUsage(it.status.usage)
            it.close()
        }
        agent = null
        if (wanted) startAgent()
    }

    private fun buildAgent(): Agent? {
        val pairing = store.pairing.value
        if (pairing == null) {
            NodeStatus.notice(getString(R.string.notice_not_paired))
            return null
        }
        val signer = KeystoreSigner.create(this)
        if (pairing.paired && !signer.hasKey()) {
            // Keystore reset, or data restored onto another phone: the server knows a key we lack.
            store.forgetPairing()
            NodeStatus.notice(getString(R.string.notice_key_lost))
            return null
        }
        NodeStatus.notice(null)
        val config =
            AgentConfig(
                link = pairing.link,
                paired = pairing.paired,
                device = DeviceInfo(
                    model = Build.MODEL,
                    os = "Android ${Build.VERSION.RELEASE}",
                    appVersion = BuildConfig.VERSION_NAME,
                    emulatorHints = EmulatorHints.from(
                        Build.FINGERPRINT, Build.MODEL, Build.MANUFACTURER, Build.HARDWARE, Build.PRODUCT, Build.BRAND, Build.DEVICE,
                    ),
                ),
            )
        val ev = Events()
        events = ev
        val a =
            Agent(
                config,
                signer,
                OkHttpTransport(),
                ev,
                store.settings.value,
                monitor.sample,
                store.usage(),
                log = { level, message -> logcat(level, message) },
            )
        a.updateOwnNetworks(monitor.ownNetworks)
        NodeStatus.publish(a.status)
        return a
    }

    /** The agent's log lines to Logcat (`adb logcat -s traffix`); debug lines only in debug builds. */
    private fun logcat(level: LogLevel, message: String) {
        when (level) {
            LogLevel.DEBUG -> if (BuildConfig.DEBUG) Log.d(LOG_TAG, message)
            LogLevel.INFO -> Log.i(LOG_TAG, message)
            LogLevel.WARN -> Log.w(LOG_TAG, message)
        }
    }

    /** The agent's events, on its thread: hand off, never block. */
    private inner class Events : AgentListener {
        override fun onStatus(status: AgentStatus) {
            if (events !== this) return
            NodeStatus.publish(status)
            if (status.phase == Phase.STOPPED) {
                lifecycleScope.launch {
                    if (events !== this@Events) return@launch
                    if (wanted) agent?.start() else finish()
                }
            }
        }

        override fun onPaired(vip: String) {
            lifecycleScope.launch { store.markPaired(vip) }
        }

        /** Unpaired (by the owner here, or removed by the admin): the key and pairing go; the Pair screen shows. */
        override fun onUnpaired() {
            lifecycleScope.launch {
                if (events !== this@Events) return@launch
                wanted = false
                store.ownerWantsRunning = false
                NodeStatus.liveAgent = null
                try {
                    KeystoreSigner.create(this@NodeService).forget()
                } catch (e: SigningException) {
                    Log.w(LOG_TAG, "could not delete the device key: ${e.message}")
                }
                store.forgetPairing()
                NodeStatus.notice(getString(R.string.notice_unpaired))
                finish()
            }
        }
    }

    private fun finish() {
        ServiceCompat.stopForeground(this, ServiceCompat.STOP_FOREGROUND_REMOVE)
        stopSelf()
    }

    /** False when Android refuses a foreground start (ForegroundServiceStartNotAllowedException). */
    private fun goForeground(): Boolean =
        try {
            ServiceCompat.startForeground(
                this,
                NOTIFICATION_ID,
                notification(agent?.status),
                ServiceInfo.FOREGROUND_SERVICE_TYPE_SPECIAL_USE,
            )
            true
        } catch (e: IllegalStateException) {
            NodeStatus.notice(getString(R.string.notice_cannot_start))
            false
        }

    private fun notify(s: AgentStatus) {
        // Without the permission (Android 13+, denied) the node still runs; the system lists it
        // in its running-apps sheet instead.
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.TIRAMISU &&
            ContextCompat.checkSelfPermission(this, Manifest.permission.POST_NOTIFICATIONS) != PackageManager.PERMISSION_GRANTED
        ) {
            return
        }
        NotificationManagerCompat.from(this).notify(NOTIFICATION_ID, notification(s))
    }

    /** Status (phase and decision), active streams, today's traffic and earnings; Stop / Retry. */
    private fun notification(s: AgentStatus?): Notification {
        val title = getString(R.string.notif_title, s?.phase?.text ?: getString(R.string.phase_starting))
        val lines = ArrayList<String>()
        if (s != null) {
            when (s.phase) {
                Phase.SERVING, Phase.DRAINING -> {
                    lines += s.decision.describe()
                    lines += resources.getQuantityString(R.plurals.streams, s.activeStreams, s.activeStreams)
                }
                Phase.BACKING_OFF, Phase.FAILED -> s.lastError?.let { lines += it }
                else -> {}
            }
            lines += getString(R.string.notif_today, Formats.bytes(s.usage.bytesToday))
            lines += getString(R.string.notif_earned, earnedToday(s))
        }
        val text = lines.joinToString(" · ")
        val open = PendingIntent.getActivity(this, 0, Intent(this, MainActivity::class.java), PendingIntent.FLAG_IMMUTABLE)
        val b =
            NotificationCompat.Builder(this, CHANNEL)
                .setSmallIcon(R.drawable.ic_notification)
                .setContentTitle(title)
                .setContentText(text)
                .setStyle(NotificationCompat.BigTextStyle().bigText(text))
                .setContentIntent(open)
                .setOngoing(true)
                .setOnlyAlertOnce(true)
                .setSilent(true)
                .setCategory(NotificationCompat.CATEGORY_SERVICE)
                .setForegroundServiceBehavior(NotificationCompat.FOREGROUND_SERVICE_IMMEDIATE)
                .addAction(0, getString(R.string.action_stop), serviceIntent(ACTION_STOP, 1))
        if (s != null && (s.phase == Phase.BACKING_OFF || s.phase == Phase.FAILED)) {
            b.addAction(0, getString(R.string.action_retry), serviceIntent(ACTION_RETRY, 2))
        }
        return b.build()
    }

    /** Nullable only in the platform's signature (FLAG_NO_CREATE is not used). */
    private fun serviceIntent(action: String, code: Int): PendingIntent? =
        PendingIntent.getService(
            this,
            code,
            Intent(this, NodeService::class.java).setAction(action),
            PendingIntent.FLAG_IMMUTABLE or PendingIntent.FLAG_UPDATE_CURRENT,
        )

    companion object {
        private const val CHANNEL = "node"
        private const val LOG_TAG = "traffix"
        private const val NOTIFICATION_ID = 1
        private const val NOTIFY_INTERVAL_MS = 2_000L

        /** Longer than the agent's drain deadline (10 s). */
        private const val STOP_GRACE_MS = 15_000L
        private const val ACTION_START = "net.traffix.node.action.START"
        private const val ACTION_STOP = "net.traffix.node.action.STOP"
        private const val ACTION_RETRY = "net.traffix.node.action.RETRY"

        /** Starts (or keeps) the node: from the UI, the boot receiver, after pairing. */
        fun start(context: Context) {
            ContextCompat.startForegroundService(context, Intent(context, NodeService::class.java).setAction(ACTION_START))
        }

        /** Reconnects now, starting the service if needed. */
        fun retry(context: Context) {
            ContextCompat.startForegroundService(context, Intent(context, NodeService::class.java).setAction(ACTION_RETRY))
        }

        /** Drains and stops; only while running (from the UI, which is in the foreground). */
        fun stop(context: Context) {
            if (NodeStatus.running.value) context.startService(Intent(context, NodeService::class.java).setAction(ACTION_STOP))
        }

        /** Today's earnings exactly, or "—" before the server has told any (first HEARTBEAT_ACK). */
        fun earnedToday(s: AgentStatus): String {
            val tally = s.server ?: return UNKNOWN
            val micros = tally.earnedToday ?: return UNKNOWN
            return Formats.money(micros, tally.currency)
        }
    }
}
