package net.traffix.node

import android.Manifest
import android.app.ForegroundServiceStartNotAllowedException
import android.app.Notification
import android.app.PendingIntent
import android.content.ComponentName
import android.content.Context
import android.content.Intent
import android.content.pm.PackageManager
import android.content.pm.ServiceInfo
import android.net.ConnectivityManager
import android.net.Network
import android.net.TrafficStats
import android.net.wifi.WifiManager
import android.os.Build
import android.os.PowerManager
import android.os.Process
import android.os.SystemClock
import android.provider.Settings
import android.service.quicksettings.TileService
import android.util.Log
import androidx.core.app.NotificationChannelCompat
import androidx.core.app.NotificationCompat
import androidx.core.app.NotificationManagerCompat
import androidx.core.app.ServiceCompat
import androidx.core.content.ContextCompat
import androidx.lifecycle.LifecycleService
import androidx.lifecycle.lifecycleScope
import java.net.InetAddress
import java.net.Socket
import java.time.LocalDate
import javax.net.SocketFactory
import kotlinx.coroutines.Job
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.distinctUntilChanged
import kotlinx.coroutines.flow.drop
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.isActive
import kotlinx.coroutines.launch
import net.traffix.core.agent.Agent
import net.traffix.core.agent.AgentConfig
import net.traffix.core.agent.AgentListener
import net.traffix.core.agent.AgentStatus
import net.traffix.core.agent.DeviceInfo
import net.traffix.core.agent.LogLevel
import net.traffix.core.agent.Phase
import net.traffix.core.agent.ThreadScheduler
import net.traffix.core.device.KeepAwake
import net.traffix.core.device.OwnerNotice
import net.traffix.core.device.Pacer
import net.traffix.core.device.RestartWatchdog
import net.traffix.core.device.StartCause
import net.traffix.core.device.WakingScheduler
import net.traffix.core.identity.EmulatorHints
import net.traffix.core.identity.SigningException
import net.traffix.core.onboarding.Consent
import net.traffix.core.policy.Action
import net.traffix.core.policy.DataUsage
import net.traffix.core.support.LogRing
import net.traffix.core.transport.SocketTransport
import net.traffix.core.usage.RadioUsageMeter
import net.traffix.node.ui.MainActivity

/**
 * What the screens observe: the agent's latest status, whether the service runs, why it could
 * not (no pairing, key lost), the radio's byte counts and the recent log. One per process;
 * written by [NodeService] only (the log by the agent too).
 */
object NodeStatus {
    private val _agent = MutableStateFlow<AgentStatus?>(null)
    val agent: StateFlow<AgentStatus?> = _agent.asStateFlow()

    private val _running = MutableStateFlow(false)
    val running: StateFlow<Boolean> = _running.asStateFlow()

    private val _notice = MutableStateFlow<Int?>(null)

    /** A string resource explaining why the node cannot run (not paired, key lost). */
    val notice: StateFlow<Int?> = _notice.asStateFlow()

    private val _radioUsage = MutableStateFlow<DataUsage?>(null)

    /** What the radio moved today and this month, as the caps count it (core `RadioUsageMeter`). */
    val radioUsage: StateFlow<DataUsage?> = _radioUsage.asStateFlow()

    /** The recent log, redacted on the way in, for the owner to send to support. */
    val log = LogRing()

    internal fun publish(status: AgentStatus) {
        _agent.value = status
    }

    internal fun running(on: Boolean) {
        _running.value = on
    }

    internal fun notice(res: Int?) {
        _notice.value = res
    }

    internal fun radio(u: DataUsage) {
        _radioUsage.value = u
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
 * Thin (STYLE.md §4.2): every decision is the core's. It goes foreground (or, when Android
 * refuses a background restart, tells the owner: core `RestartWatchdog`), builds the agent from
 * the stored pairing and settings, feeds it the [DeviceMonitor]'s samples and own networks,
 * binds the process to the chosen network, meters the radio with the app's UID counters (core
 * `RadioUsageMeter`) and hands that count to the agent (its caps and heartbeats use it), holds
 * wake and Wi-Fi locks while streams are live (core `KeepAwake`) and
 * refreshes the notification and the saved counters at a calm pace (core `Pacer`).
 */
class NodeService : LifecycleService() {
    private lateinit var store: SettingsStore
    private lateinit var monitor: DeviceMonitor
    private lateinit var meter: RadioUsageMeter
    private val wakeLock: PowerManager.WakeLock by lazy {
        getSystemService(PowerManager::class.java).newWakeLock(PowerManager.PARTIAL_WAKE_LOCK, "traffix:streams").apply {
            setReferenceCounted(false)
        }
    }

    /** FULL_HIGH_PERF (deprecated in 34, still honoured): the mode that keeps a screen-off Wi-Fi radio out of power save. */
    @Suppress("DEPRECATION")
    private val wifiLock: WifiManager.WifiLock by lazy {
        getSystemService(WifiManager::class.java).createWifiLock(WifiManager.WIFI_MODE_FULL_HIGH_PERF, "traffix:streams").apply {
            setReferenceCounted(false)
        }
    }
    private var agent: Agent? = null

    /** The listener of [agent]; a replaced agent's late events are ignored. Read on the agent's thread. */
    @Volatile private var events: Events? = null

    /** The owner wants the node running; false after Stop, so STOPPED ends the service. */
    private var wanted = false

    /** The network the process is bound to; read by the agent's threads through [boundSockets]. */
    @Volatile private var boundTo: Network? = null

    /**
     * Every socket the agent makes — the tunnel's and every dial's — on the network the process
     * is bound to now ([bindNetwork]), explicitly and not only through the process binding.
     */
    private val boundSockets =
        object : SocketFactory() {
            private fun current(): SocketFactory = boundTo?.socketFactory ?: SocketFactory.getDefault()

            override fun createSocket(): Socket = current().createSocket()

            override fun createSocket(host: String?, port: Int): Socket = current().createSocket(host, port)

            override fun createSocket(host: String?, port: Int, localHost: InetAddress?, localPort: Int): Socket =
                current().createSocket(host, port, localHost, localPort)

            override fun createSocket(host: InetAddress?, port: Int): Socket = current().createSocket(host, port)

            override fun createSocket(address: InetAddress?, port: Int, localAddress: InetAddress?, localPort: Int): Socket =
                current().createSocket(address, port, localAddress, localPort)
        }
    private val keepAwake = KeepAwake(AlarmWaker.ELAPSED)
    private var lockRecheck: Job? = null
    private val notificationPacer = Pacer(Pacer.NOTIFICATION_MILLIS)
    private val savePacer = Pacer(Pacer.SETTINGS_MILLIS)
    private var notifyLater: Job? = null
    private var lastShown: Shown? = null

    /** What an IMPORTANT notification change is: the owner sees these at once. */
    private data class Shown(val phase: Phase?, val action: Action?, val paused: Boolean)

    override fun onCreate() {
        super.onCreate()
        store = SettingsStore.get(this)
        val nm = NotificationManagerCompat.from(this)
        nm.createNotificationChannel(
            NotificationChannelCompat.Builder(CHANNEL, NotificationManagerCompat.IMPORTANCE_LOW)
                .setName(getString(R.string.channel_name))
                .setDescription(getString(R.string.channel_description))
                .setShowBadge(false)
                .build(),
        )
        nm.createNotificationChannel(
            NotificationChannelCompat.Builder(CHANNEL_ALERTS, NotificationManagerCompat.IMPORTANCE_DEFAULT)
                .setName(getString(R.string.channel_alerts_name))
                .setDescription(getString(R.string.channel_alerts_description))
                .build(),
        )
        meter = RadioUsageMeter(store.meterState(LocalDate.now()))
        monitor =
            DeviceMonitor(
                this,
                // Metered, roaming, Data Saver and Battery Saver travel in the sample: the agent
                // pauses for them itself and tells the server why.
                onSample = { agent?.updateDevice(it) },
                onOwnNetworks = { agent?.updateOwnNetworks(it) },
                onFacts = { bindNetwork() },
            )
        monitor.start()
        bindNetwork()
        NodeStatus.running(true)
        sampleRadio()

        lifecycleScope.launch {
            store.settings.collect {
                agent?.updateSettings(it)
                showStatus()
            }
        }
        // A new pairing while running: a new agent with the new link (and key).
        lifecycleScope.launch {
            store.pairing.map { it?.link }.distinctUntilChanged().drop(1).collect { replaceAgent() }
        }
        // The radio's counters: read every METER_INTERVAL_MS (cheap), saved at the save pace.
        lifecycleScope.launch {
            while (isActive) {
                delay(METER_INTERVAL_MS)
                sampleRadio()
                showStatus()
            }
        }
    }

    override fun onStartCommand(intent: Intent?, flags: Int, startId: Int): Int {
        super.onStartCommand(intent, flags, startId)
        val cause =
            when (intent?.action) {
                null -> StartCause.STICKY_RESTART // the system re-created us after killing the process
                ACTION_BOOT -> StartCause.BOOT
                ACTION_UPDATE -> StartCause.APP_UPDATE
                else -> StartCause.OWNER
            }
        when (intent?.action) {
            ACTION_STOP -> requestStop()
            ACTION_PAUSE -> {
                store.setPaused(true)
                if (agent == null) finish()
            }
            else -> {
                // startForegroundService() requires startForeground() soon, even if we then stop.
                if (!goForeground()) {
                    finish()
                    return START_NOT_STICKY
                }
                val journal = store.journal()
                if (!RestartWatchdog.shouldRun(cause, journal)) {
                    finish()
                    return START_NOT_STICKY
                }
                store.saveJournal(RestartWatchdog.started(journal, cause, System.currentTimeMillis()))
                if (intent?.action == ACTION_RESUME) store.setPaused(false)
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
            it.close() // its STOPPED reaches NodeStatus through the still-current listener
        }
        agent = null
        sampleRadio()
        store.saveMeterState(meter.state)
        releaseLocks()
        monitor.stop()
        getSystemService(ConnectivityManager::class.java).bindProcessToNetwork(null)
        NodeStatus.running(false)
        super.onDestroy()
    }

    private fun startAgent() {
        wanted = true
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
        store.saveJournal(RestartWatchdog.ownerStopped(store.journal()))
        val a = agent
        if (a == null || a.status.phase == Phase.STOPPED) {
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
        agent?.close()
        agent = null
        if (wanted) startAgent()
    }

    private fun buildAgent(): Agent? {
        val pairing = store.pairing.value
        if (pairing == null) {
            NodeStatus.notice(R.string.notice_not_paired)
            return null
        }
        if (Consent.needed(store.consentVersion.value)) {
            // Never share before the owner has read and accepted the disclosure.
            NodeStatus.notice(R.string.notice_consent_needed)
            return null
        }
        val signer = KeystoreSigner.create(this)
        if (pairing.paired && !signer.hasKey()) {
            // Keystore reset, or data restored onto another phone: the server knows a key we lack.
            store.forgetPairing()
            NodeStatus.notice(R.string.notice_key_lost)
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
                socketFactory = boundSockets,
            )
        val ev = Events()
        events = ev
        val a =
            Agent(
                config,
                signer,
                SocketTransport(socketFactory = boundSockets),
                ev,
                store.settings.value,
                monitor.sample,
                // The radio's count so far; sampleRadio() replaces it every METER_INTERVAL_MS
                // (updateUsage): the caps and the heartbeats' byte counts are the radio's.
                meter.usage(LocalDate.now(), store.settings.value.monthStartDay),
                // Time that counts the CPU's sleep, and timers that wake the phone (the node
                // holds no wake lock while idle).
                clock = AlarmWaker.ELAPSED,
                scheduler = WakingScheduler(ThreadScheduler(), AlarmWaker(this)),
                log = { level, message -> log(level, message) },
            )
        a.updateOwnNetworks(monitor.ownNetworks)
        NodeStatus.publish(a.status)
        return a
    }

    /** The agent's log lines to the support ring and to Logcat (`adb logcat -s traffix`; debug only in debug builds). */
    private fun log(level: LogLevel, message: String) {
        if (level != LogLevel.DEBUG || BuildConfig.DEBUG) NodeStatus.log.add(System.currentTimeMillis(), level.name, message)
        when (level) {
            LogLevel.DEBUG -> if (BuildConfig.DEBUG) Log.d(LOG_TAG, message)
            LogLevel.INFO -> Log.i(LOG_TAG, message)
            LogLevel.WARN -> Log.w(LOG_TAG, message)
        }
    }

    // ---- the phone's own facts ----

    /** Reads the app's UID counters into the meter; saves it at the save pace. */
    private fun sampleRadio() {
        val uid = Process.myUid()
        val usage =
            meter.sample(
                TrafficStats.getUidRxBytes(uid),
                TrafficStats.getUidTxBytes(uid),
                bootId(),
                LocalDate.now(),
                store.settings.value.monthStartDay,
            )
        NodeStatus.radio(usage)
        agent?.updateUsage(usage)
        val now = SystemClock.elapsedRealtime()
        if (savePacer.due(now, Pacer.Change.ROUTINE)) {
            store.saveMeterState(meter.state)
            if (wanted) store.saveJournal(RestartWatchdog.alive(store.journal(), System.currentTimeMillis()))
            savePacer.wrote(now)
        }
    }

    /** Which boot the UID counters belong to (they restart at zero with every boot). */
    private fun bootId(): Long? =
        Settings.Global.getInt(contentResolver, Settings.Global.BOOT_COUNT, -1).takeIf { it >= 0 }?.toLong()

    /**
     * Binds the whole process — the tunnel, every dial and DNS — to the default network while the
     * owner's settings accept it, so a handover never moves traffic onto a network they did not
     * accept: when Wi-Fi goes and mobile data takes over with "Wi-Fi only" on, the process stays
     * bound to the lost Wi-Fi and its sockets fail instead of spilling onto mobile data.
     */
    private fun bindNetwork() {
        val facts = monitor.facts
        val net = facts.network ?: return
        val acceptable = !(store.settings.value.wifiOnly && (facts.metered || facts.roaming))
        if (!acceptable || net == boundTo) return
        if (getSystemService(ConnectivityManager::class.java).bindProcessToNetwork(net)) {
            boundTo = net
            log(LogLevel.INFO, "bound to the default network")
            agent?.let { if (it.status.phase == Phase.BACKING_OFF) it.retryNow() }
        }
    }

    /** Wake and Wi-Fi locks only while streams are live (and a little after). */
    private fun applyLocks(s: AgentStatus) {
        val locks = keepAwake.update(s.activeStreams, monitor.sample.network)
        if (locks.wakeLock) wakeLock.acquire(LOCK_SAFETY_MS) else if (wakeLock.isHeld) wakeLock.release()
        if (locks.wifiLock) {
            if (!wifiLock.isHeld) wifiLock.acquire()
        } else if (wifiLock.isHeld) {
            wifiLock.release()
        }
        lockRecheck?.cancel()
        keepAwake.recheckAfterMillis()?.let { after ->
            lockRecheck =
                lifecycleScope.launch {
                    delay(after + 1)
                    agent?.status?.let(::applyLocks) ?: releaseLocks()
                }
        }
    }

    private fun releaseLocks() {
        lockRecheck?.cancel()
        if (wakeLock.isHeld) wakeLock.release()
        if (wifiLock.isHeld) wifiLock.release()
    }

    /** The agent's events, on its thread: hand off, never block. */
    private inner class Events : AgentListener {
        override fun onStatus(status: AgentStatus) {
            if (events !== this) return
            NodeStatus.publish(status)
            lifecycleScope.launch {
                if (events !== this@Events) return@launch
                applyLocks(status)
                showStatus()
                if (status.phase == Phase.STOPPED) {
                    // Started again while it was still draining after a Stop: run.
                    if (!wanted) finish() else agent?.start()
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
                store.saveJournal(RestartWatchdog.ownerStopped(store.journal()))
                NodeStatus.liveAgent = null
                try {
                    KeystoreSigner.create(this@NodeService).forget()
                } catch (e: SigningException) {
                    Log.w(LOG_TAG, "could not delete the device key: ${e.message}")
                }
                store.forgetPairing()
                NodeStatus.notice(R.string.notice_unpaired)
                finish()
            }
        }
    }

    private fun finish() {
        releaseLocks()
        ServiceCompat.stopForeground(this, ServiceCompat.STOP_FOREGROUND_REMOVE)
        stopSelf()
    }

    /**
     * False when Android refuses a foreground start: Android 12+ throws
     * ForegroundServiceStartNotAllowedException for a background start (a START_STICKY restart
     * after the system killed us) that is not exempt. The core's watchdog records it and the
     * owner gets a plain notification that opens the app.
     */
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
            val refused = Build.VERSION.SDK_INT >= Build.VERSION_CODES.S && e is ForegroundServiceStartNotAllowedException
            log(LogLevel.WARN, "foreground start refused error=${e.javaClass.simpleName}")
            val (journal, notice) = RestartWatchdog.foregroundRefused(store.journal(), System.currentTimeMillis())
            if (refused) store.saveJournal(journal)
            NodeStatus.notice(R.string.notice_cannot_start)
            alert(notice)
            false
        }

    /** A plain notification (allowed without a foreground service) that opens the app. */
    private fun alert(notice: OwnerNotice) {
        if (!mayNotify()) return
        val b =
            NotificationCompat.Builder(this, CHANNEL_ALERTS)
                .setSmallIcon(R.drawable.ic_notification)
                .setContentTitle(getString(R.string.alert_title))
                .setContentText(getString(Texts.res(notice.text)))
                .setStyle(NotificationCompat.BigTextStyle().bigText(getString(Texts.res(notice.text))))
                .setContentIntent(openApp())
                .setAutoCancel(true)
        NotificationManagerCompat.from(this).notify(ALERT_ID, b.build())
    }

    private fun mayNotify(): Boolean =
        Build.VERSION.SDK_INT < Build.VERSION_CODES.TIRAMISU ||
            ContextCompat.checkSelfPermission(this, Manifest.permission.POST_NOTIFICATIONS) == PackageManager.PERMISSION_GRANTED

    /** Refreshes the notification: changes the owner must see at once, the rest every 15 s. */
    private fun showStatus() {
        val s = agent?.status
        val shown = Shown(s?.phase, s?.decision?.action, store.settings.value.paused)
        val change = if (shown != lastShown) Pacer.Change.IMPORTANT else Pacer.Change.ROUTINE
        val now = SystemClock.elapsedRealtime()
        if (change == Pacer.Change.IMPORTANT) {
            TileService.requestListeningState(this, ComponentName(this, NodeTileService::class.java))
        }
        if (notificationPacer.due(now, change)) {
            notificationPacer.wrote(now)
            lastShown = shown
            notifyLater?.cancel()
            // Without the permission (Android 13+, denied) the node still runs; the system lists
            // it in its running-apps sheet instead.
            if (mayNotify()) NotificationManagerCompat.from(this).notify(NOTIFICATION_ID, notification(s))
            return
        }
        val at = notificationPacer.nextDueMillis() ?: return
        if (notifyLater?.isActive == true) return
        notifyLater =
            lifecycleScope.launch {
                delay((at - now).coerceAtLeast(0))
                showStatus()
            }
    }

    /** Phase and decision, active streams, the radio's count today and earnings; Pause/Resume, Stop, Retry. */
    private fun notification(s: AgentStatus?): Notification {
        val paused = store.settings.value.paused
        val title = getString(R.string.notif_title, s?.phase?.let { getString(Texts.res(it)) } ?: getString(R.string.phase_starting))
        val lines = ArrayList<String>()
        if (s != null) {
            when (s.phase) {
                Phase.SERVING, Phase.DRAINING -> {
                    lines += Texts.decision(this, s.decision)
                    lines += resources.getQuantityString(R.plurals.streams, s.activeStreams, s.activeStreams)
                }
                // Paused by a setting, the tunnel closed: which setting (the agent's decision).
                Phase.PAUSED -> lines += Texts.decision(this, s.decision)
                Phase.BACKING_OFF, Phase.FAILED -> s.lastError?.let { lines += Texts.error(this, it) }
                else -> {}
            }
        }
        NodeStatus.radioUsage.value?.let { lines += getString(R.string.notif_today, Texts.bytes(this, it.bytesToday)) }
        s?.let { lines += getString(R.string.notif_earned, earnedToday(this, it)) }
        val text = lines.joinToString(" · ")
        val b =
            NotificationCompat.Builder(this, CHANNEL)
                .setSmallIcon(R.drawable.ic_notification)
                .setContentTitle(title)
                .setContentText(text)
                .setStyle(NotificationCompat.BigTextStyle().bigText(text))
                .setContentIntent(openApp())
                .setOngoing(true)
                .setOnlyAlertOnce(true)
                .setSilent(true)
                .setCategory(NotificationCompat.CATEGORY_SERVICE)
                .setForegroundServiceBehavior(NotificationCompat.FOREGROUND_SERVICE_IMMEDIATE)
        if (paused) {
            b.addAction(0, getString(R.string.action_resume), serviceIntent(ACTION_RESUME, 3))
        } else {
            b.addAction(0, getString(R.string.action_pause), serviceIntent(ACTION_PAUSE, 4))
        }
        b.addAction(0, getString(R.string.action_stop), serviceIntent(ACTION_STOP, 1))
        if (s != null && (s.phase == Phase.BACKING_OFF || s.phase == Phase.FAILED)) {
            b.addAction(0, getString(R.string.action_retry), serviceIntent(ACTION_RETRY, 2))
        }
        return b.build()
    }

    private fun openApp(): PendingIntent =
        PendingIntent.getActivity(this, 0, Intent(this, MainActivity::class.java), PendingIntent.FLAG_IMMUTABLE)

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
        private const val CHANNEL_ALERTS = "alerts"
        private const val LOG_TAG = "traffix"
        private const val NOTIFICATION_ID = 1
        private const val ALERT_ID = 2

        /** How often the UID counters are read (a cheap call; saved only every 30 s). */
        private const val METER_INTERVAL_MS = 15_000L

        /** A wake lock is re-acquired on every status while streams are live; this bounds a lost release. */
        private const val LOCK_SAFETY_MS = 10 * 60_000L

        /** Longer than the agent's drain deadline (10 s). */
        private const val STOP_GRACE_MS = 15_000L
        private const val ACTION_START = "net.traffix.node.action.START"
        private const val ACTION_BOOT = "net.traffix.node.action.BOOT"
        private const val ACTION_UPDATE = "net.traffix.node.action.UPDATE"
        private const val ACTION_STOP = "net.traffix.node.action.STOP"
        private const val ACTION_RETRY = "net.traffix.node.action.RETRY"
        private const val ACTION_PAUSE = "net.traffix.node.action.PAUSE"
        private const val ACTION_RESUME = "net.traffix.node.action.RESUME"

        /** Starts (or keeps) the node: from the UI, the tile, after pairing. */
        fun start(context: Context) = startWith(context, ACTION_START)

        /** From the boot receiver: runs only if the owner left it running (core RestartWatchdog). */
        fun startAfterBoot(context: Context) = startWith(context, ACTION_BOOT)

        /** From the boot receiver after an app update. */
        fun startAfterUpdate(context: Context) = startWith(context, ACTION_UPDATE)

        /** Reconnects now, starting the service if needed. */
        fun retry(context: Context) = startWith(context, ACTION_RETRY)

        /** Resumes sharing (clears the owner's pause), starting the service if needed. */
        fun resume(context: Context) = startWith(context, ACTION_RESUME)

        /** Pauses sharing: the service keeps running, no streams until resumed. */
        fun pause(context: Context) {
            if (NodeStatus.running.value) {
                context.startService(Intent(context, NodeService::class.java).setAction(ACTION_PAUSE))
            } else {
                SettingsStore.get(context).setPaused(true)
            }
        }

        /** Drains and stops; only while running (from the UI, which is in the foreground). */
        fun stop(context: Context) {
            if (NodeStatus.running.value) context.startService(Intent(context, NodeService::class.java).setAction(ACTION_STOP))
        }

        private fun startWith(context: Context, action: String) {
            ContextCompat.startForegroundService(context, Intent(context, NodeService::class.java).setAction(action))
        }

        /** Today's earnings exactly, or "—" before the server has told any (first HEARTBEAT_ACK). */
        fun earnedToday(context: Context, s: AgentStatus): String {
            val tally = s.server ?: return UNKNOWN
            val micros = tally.earnedToday ?: return UNKNOWN
            return Texts.money(context, micros, tally.currency)
        }
    }
}
