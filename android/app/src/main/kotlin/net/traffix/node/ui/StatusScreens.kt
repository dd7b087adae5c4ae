package net.traffix.node.ui

import android.Manifest
import android.content.ActivityNotFoundException
import android.content.Context
import android.content.Intent
import android.content.pm.PackageManager
import android.os.Build
import android.os.PowerManager
import android.provider.Settings
import android.text.format.DateFormat
import android.text.format.DateUtils
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.material3.Button
import androidx.compose.material3.Card
import androidx.compose.material3.CardDefaults
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.produceState
import androidx.compose.runtime.remember
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.unit.dp
import androidx.core.content.ContextCompat
import androidx.core.net.toUri
import androidx.lifecycle.compose.LifecycleResumeEffect
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import java.time.LocalDate
import java.time.format.DateTimeFormatter
import java.time.format.FormatStyle
import java.util.Date
import kotlinx.coroutines.delay
import net.traffix.core.agent.AgentStatus
import net.traffix.core.agent.Phase
import net.traffix.core.device.OwnerNotice
import net.traffix.core.device.RestartWatchdog
import net.traffix.core.policy.DataUsage
import net.traffix.core.text.UiText
import net.traffix.node.BuildConfig
import net.traffix.node.NodeService
import net.traffix.node.NodeStatus
import net.traffix.node.R
import net.traffix.node.SettingsStore
import net.traffix.node.Texts
import net.traffix.node.UNKNOWN

/**
 * Home: what the node is doing and why, today's numbers, Start / Stop / Pause / Retry, what the
 * owner must know (a refused restart, a node the system ended, an update the server requires),
 * permission prompts, the battery guide, the operator's terms and the log for support.
 */
@Composable
internal fun HomeScreen(store: SettingsStore, onPairAgain: () -> Unit, onBatteryGuide: () -> Unit) {
    val context = LocalContext.current
    val status by NodeStatus.agent.collectAsStateWithLifecycle()
    val running by NodeStatus.running.collectAsStateWithLifecycle()
    val notice by NodeStatus.notice.collectAsStateWithLifecycle()
    val radio by NodeStatus.radioUsage.collectAsStateWithLifecycle()
    val pairing by store.pairing.collectAsStateWithLifecycle()
    val settings by store.settings.collectAsStateWithLifecycle()
    val s = status?.takeIf { running }
    val ownerNotice = RestartWatchdog.assess(store.journal(), running, System.currentTimeMillis(), status)

    ScreenColumn {
        notice?.let { NoticeCard(stringResource(it)) }
        ownerNotice?.let { n -> OwnerNoticeCard(n, onBatteryGuide) }
        PermissionCards()

        Section(stringResource(R.string.home_status)) {
            Text(
                s?.phase?.let { stringResource(Texts.res(it)) }?.replaceFirstChar { it.uppercase() } ?: stringResource(R.string.state_not_running),
                style = MaterialTheme.typography.headlineMedium,
            )
            if (s != null) {
                Text(Texts.decision(context, s.decision), style = MaterialTheme.typography.bodyLarge)
                ValueRow(stringResource(R.string.home_active_streams), s.activeStreams.toString())
                ValueRow(stringResource(R.string.home_vip), s.vip ?: pairing?.vip ?: UNKNOWN)
                s.retryAtMillis?.let {
                    ValueRow(stringResource(R.string.home_next_attempt), DateFormat.getTimeFormat(context).format(Date(it)))
                }
                s.lastError?.let {
                    Text(stringResource(R.string.home_last_error, Texts.error(context, it)), color = MaterialTheme.colorScheme.error)
                }
            }
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                if (s == null || s.phase == Phase.STOPPED) {
                    Button(onClick = { NodeService.start(context) }) { Text(stringResource(R.string.action_start)) }
                } else {
                    OutlinedButton(onClick = { NodeService.stop(context) }) { Text(stringResource(R.string.action_stop)) }
                }
                if (settings.paused) {
                    Button(onClick = { NodeService.resume(context) }) { Text(stringResource(R.string.action_resume)) }
                } else if (s != null) {
                    OutlinedButton(onClick = { NodeService.pause(context) }) { Text(stringResource(R.string.action_pause)) }
                }
                if (s != null && (s.phase == Phase.BACKING_OFF || s.phase == Phase.FAILED)) {
                    Button(onClick = { NodeService.retry(context) }) { Text(stringResource(R.string.action_retry)) }
                }
            }
        }

        Section(stringResource(R.string.home_today)) {
            val usage = radio ?: storedUsage(store)
            ValueRow(stringResource(R.string.stats_traffic_today), usage?.let { Texts.bytes(context, it.bytesToday) } ?: UNKNOWN)
            ValueRow(stringResource(R.string.stats_earned_today), s?.let { NodeService.earnedToday(context, it) } ?: UNKNOWN)
        }

        TextButton(onClick = onBatteryGuide) { Text(stringResource(R.string.home_battery_guide)) }
        store.termsUrl?.let { terms ->
            TextButton(onClick = { openUrl(context, terms) }) { Text(stringResource(R.string.home_terms)) }
        }
        TextButton(onClick = { shareLog(context, s) }) { Text(stringResource(R.string.home_send_log)) }
        TextButton(onClick = onPairAgain) { Text(stringResource(R.string.home_pair_again)) }
    }
}

/** A refused restart, a node the system ended, or an update the server requires, with what to do. */
@Composable
private fun OwnerNoticeCard(n: OwnerNotice, onBatteryGuide: () -> Unit) {
    val context = LocalContext.current
    val at = n.atMillis?.let { DateFormat.getTimeFormat(context).format(Date(it)) } ?: ""
    val text = stringResource(Texts.res(n.text), at)
    when (n.text) {
        UiText.NOTICE_UPDATE_REQUIRED ->
            NoticeCard(text, stringResource(R.string.action_update)) {
                openUrl(context, "market://details?id=${context.packageName}", "https://play.google.com/store/apps/details?id=${context.packageName}")
            }
        else ->
            NoticeCard(text, stringResource(R.string.home_battery_guide), onBatteryGuide, stringResource(R.string.action_start)) {
                NodeService.start(context)
            }
    }
}

/** Opens [url] in whatever handles it, else [fallback]. */
internal fun openUrl(context: Context, url: String, fallback: String? = null) {
    try {
        context.startActivity(Intent(Intent.ACTION_VIEW, url.toUri()))
    } catch (e: ActivityNotFoundException) {
        fallback?.let { openUrl(context, it) }
    }
}

/**
 * Support: the recent log (redacted by the core as it was written: no pairing code, pin, key or
 * signature, no client target) with the app and Android versions, through the share sheet.
 */
private fun shareLog(context: Context, s: AgentStatus?) {
    val header =
        listOf(
            "Traffix node ${BuildConfig.VERSION_NAME} (${BuildConfig.VERSION_CODE})",
            "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT}), ${Build.MANUFACTURER} ${Build.MODEL}",
            "phase ${s?.phase?.name?.lowercase() ?: "not running"}, decision ${s?.decision?.describe() ?: "-"}",
        )
    val send =
        Intent(Intent.ACTION_SEND)
            .setType("text/plain")
            .putExtra(Intent.EXTRA_SUBJECT, context.getString(R.string.log_subject))
            .putExtra(Intent.EXTRA_TEXT, NodeStatus.log.export(header))
    context.startActivity(Intent.createChooser(send, context.getString(R.string.home_send_log)))
}

/** Stats: traffic, earnings, uptime and quality. Unknown values show "—", never a guess. */
@Composable
internal fun StatsScreen(store: SettingsStore) {
    val context = LocalContext.current
    val status by NodeStatus.agent.collectAsStateWithLifecycle()
    val running by NodeStatus.running.collectAsStateWithLifecycle()
    val settings by store.settings.collectAsStateWithLifecycle()
    val s = status?.takeIf { running }
    val now by produceState(System.currentTimeMillis()) {
        while (true) {
            delay(1_000)
            value = System.currentTimeMillis()
        }
    }
    val radio by NodeStatus.radioUsage.collectAsStateWithLifecycle()
    val usage = radio ?: storedUsage(store)

    ScreenColumn {
        Section(stringResource(R.string.stats_traffic)) {
            ValueRow(stringResource(R.string.stats_traffic_today), usage?.let { Texts.bytes(context, it.bytesToday) } ?: UNKNOWN)
            ValueRow(
                stringResource(
                    R.string.stats_traffic_month,
                    DateTimeFormatter.ofLocalizedDate(FormatStyle.MEDIUM)
                        .withLocale(Texts.locale(context))
                        .format(DataUsage.monthPeriodStart(LocalDate.now(), settings.monthStartDay)),
                ),
                usage?.let { Texts.bytes(context, it.bytesMonth) } ?: UNKNOWN,
            )
            ValueRow(stringResource(R.string.stats_server_today), s?.server?.bytesToday?.let { Texts.bytes(context, it) } ?: UNKNOWN)
        }
        Section(stringResource(R.string.stats_earnings)) {
            ValueRow(stringResource(R.string.stats_earned_today), s?.let { NodeService.earnedToday(context, it) } ?: UNKNOWN)
            Text(stringResource(R.string.stats_earnings_note), style = MaterialTheme.typography.bodySmall)
        }
        Section(stringResource(R.string.stats_uptime)) {
            ValueRow(
                stringResource(R.string.stats_connected_for),
                s?.connectedSinceMillis?.let { DateUtils.formatElapsedTime((now - it).coerceAtLeast(0) / 1000) } ?: UNKNOWN,
            )
        }
        Section(stringResource(R.string.stats_quality)) {
            ValueRow(stringResource(R.string.stats_rtt), s?.rttMillis?.let { stringResource(R.string.unit_ms, it) } ?: UNKNOWN)
            ValueRow(stringResource(R.string.stats_dial_success), s?.dialSuccessPct?.let { stringResource(R.string.unit_pct, it) } ?: UNKNOWN)
            ValueRow(stringResource(R.string.stats_served), s?.streamsServed?.toString() ?: UNKNOWN)
            ValueRow(stringResource(R.string.stats_refused), s?.streamsRefused?.toString() ?: UNKNOWN)
            ValueRow(stringResource(R.string.stats_failed), s?.streamsFailed?.toString() ?: UNKNOWN)
        }
        HistorySections(store)
    }
}

/** The saved counters as of today (the core's roll-over), while the node is not running. */
private fun storedUsage(store: SettingsStore): DataUsage? =
    store.usage()?.rolledTo(LocalDate.now(), store.settings.value.monthStartDay)

@Composable
private fun NoticeCard(
    text: String,
    action: String? = null,
    onAction: () -> Unit = {},
    action2: String? = null,
    onAction2: () -> Unit = {},
) {
    Card(Modifier.fillMaxWidth(), colors = CardDefaults.cardColors(containerColor = MaterialTheme.colorScheme.secondaryContainer)) {
        Column(Modifier.padding(16.dp)) {
            Text(text, style = MaterialTheme.typography.bodyMedium)
            Row {
                if (action != null) TextButton(onClick = onAction) { Text(action) }
                if (action2 != null) TextButton(onClick = onAction2) { Text(action2) }
            }
        }
    }
}

/**
 * The two things the owner must allow for the node to work well: notifications (Android 13+;
 * the status lives there) and running unrestricted in the background (Doze would cut the
 * tunnel). Re-checked whenever the screen resumes, e.g. back from the system settings.
 */
@Composable
private fun PermissionCards() {
    val context = LocalContext.current
    var notificationsAllowed by remember { mutableStateOf(notificationsAllowed(context)) }
    var batteryUnrestricted by remember { mutableStateOf(batteryUnrestricted(context)) }
    var asked by rememberSaveable { mutableStateOf(false) }
    LifecycleResumeEffect(Unit) {
        notificationsAllowed = notificationsAllowed(context)
        batteryUnrestricted = batteryUnrestricted(context)
        onPauseOrDispose {}
    }
    val request =
        rememberLauncherForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
            notificationsAllowed = granted
            asked = true
        }

    if (!notificationsAllowed && Build.VERSION.SDK_INT >= Build.VERSION_CODES.TIRAMISU) {
        NoticeCard(stringResource(R.string.perm_notifications), stringResource(R.string.perm_allow)) {
            if (!asked) {
                request.launch(Manifest.permission.POST_NOTIFICATIONS)
            } else {
                // Denied before: Android will not ask again, only its settings can grant it.
                context.startActivity(
                    Intent(Settings.ACTION_APP_NOTIFICATION_SETTINGS).putExtra(Settings.EXTRA_APP_PACKAGE, context.packageName),
                )
            }
        }
    }
    if (!batteryUnrestricted) {
        // The list of apps, not the direct request: Play restricts REQUEST_IGNORE_BATTERY_OPTIMIZATIONS.
        NoticeCard(stringResource(R.string.perm_battery), stringResource(R.string.perm_open_settings)) {
            openBatterySettings(context)
        }
    }
}

private fun notificationsAllowed(context: Context): Boolean =
    Build.VERSION.SDK_INT < Build.VERSION_CODES.TIRAMISU ||
        ContextCompat.checkSelfPermission(context, Manifest.permission.POST_NOTIFICATIONS) == PackageManager.PERMISSION_GRANTED

/** Android's list of battery-optimised apps, where the owner picks "Don't optimise" for this one. */
internal fun openBatterySettings(context: Context) {
    try {
        context.startActivity(Intent(Settings.ACTION_IGNORE_BATTERY_OPTIMIZATION_SETTINGS))
    } catch (e: ActivityNotFoundException) {
        context.startActivity(Intent(Settings.ACTION_APPLICATION_DETAILS_SETTINGS, "package:${context.packageName}".toUri()))
    }
}

private fun batteryUnrestricted(context: Context): Boolean =
    context.getSystemService(PowerManager::class.java).isIgnoringBatteryOptimizations(context.packageName)
