package net.traffix.node.ui

import android.content.Intent
import android.os.Build
import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.BackHandler
import androidx.activity.compose.setContent
import androidx.activity.enableEdgeToEdge
import androidx.annotation.DrawableRes
import androidx.annotation.StringRes
import androidx.compose.foundation.isSystemInDarkTheme
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.ColumnScope
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Card
import androidx.compose.material3.Icon
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.NavigationBar
import androidx.compose.material3.NavigationBarItem
import androidx.compose.material3.Scaffold
import androidx.compose.material3.Text
import androidx.compose.material3.darkColorScheme
import androidx.compose.material3.dynamicDarkColorScheme
import androidx.compose.material3.dynamicLightColorScheme
import androidx.compose.material3.lightColorScheme
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.saveable.rememberSaveable
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.res.painterResource
import androidx.compose.ui.res.stringResource
import androidx.compose.ui.text.style.TextAlign
import androidx.compose.ui.unit.dp
import androidx.lifecycle.compose.collectAsStateWithLifecycle
import net.traffix.core.onboarding.Consent
import net.traffix.node.NodeService
import net.traffix.node.R
import net.traffix.node.SettingsStore

/**
 * The one activity: Home (status and controls), Stats, Settings in a bottom bar, and Pair —
 * the only screen until the phone is paired, reached from Home afterwards, and opened by a
 * `traffix://pair?…` link (prefilled, never paired without the owner's tap).
 */
class MainActivity : ComponentActivity() {
    /** A pairing link this activity was opened with, until the Pair screen took it. */
    private var openedLink by mutableStateOf<String?>(null)

    override fun onCreate(savedInstanceState: Bundle?) {
        enableEdgeToEdge()
        super.onCreate(savedInstanceState)
        if (savedInstanceState == null) openedLink = intent.pairLink()
        val store = SettingsStore.get(this)
        setContent {
            TraffixTheme {
                NodeApp(store, openedLink, onLinkTaken = { openedLink = null })
            }
        }
    }

    override fun onNewIntent(intent: Intent) {
        super.onNewIntent(intent)
        intent.pairLink()?.let { openedLink = it }
    }

    private fun Intent?.pairLink(): String? = if (this?.action == Intent.ACTION_VIEW) dataString else null
}

private enum class Screen(@StringRes val label: Int, @DrawableRes val icon: Int) {
    HOME(R.string.tab_home, R.drawable.ic_tab_home),
    STATS(R.string.tab_stats, R.drawable.ic_tab_stats),
    SETTINGS(R.string.tab_settings, R.drawable.ic_tab_settings),
    PAIR(R.string.tab_pair, 0),
    GUIDE(R.string.guide_title, 0),
}

@Composable
private fun NodeApp(store: SettingsStore, openedLink: String?, onLinkTaken: () -> Unit) {
    val context = LocalContext.current
    val pairing by store.pairing.collectAsStateWithLifecycle()
    val consented by store.consentVersion.collectAsStateWithLifecycle()
    var chosen by rememberSaveable { mutableStateOf(Screen.HOME) }
    val paired = pairing
    if (paired != null && openedLink == null && Consent.needed(consented)) {
        // Paired before this version of the disclosure: the owner agrees again before sharing.
        ConsentScreen(
            server = paired.link.host,
            termsUrl = store.termsUrl,
            onAgree = {
                store.acceptConsent(Consent.VERSION, store.termsUrl)
                NodeService.start(context)
            },
            onDecline = { NodeService.stop(context) },
        )
        return
    }
    val screen = if (pairing == null || openedLink != null) Screen.PAIR else chosen
    BackHandler(enabled = screen != Screen.HOME && pairing != null) {
        onLinkTaken()
        chosen = Screen.HOME
    }
    Scaffold(
        bottomBar = {
            if (screen != Screen.PAIR && screen != Screen.GUIDE) {
                NavigationBar {
                    for (s in listOf(Screen.HOME, Screen.STATS, Screen.SETTINGS)) {
                        NavigationBarItem(
                            selected = s == screen,
                            onClick = { chosen = s },
                            icon = { Icon(painterResource(s.icon), contentDescription = null) },
                            label = { Text(stringResource(s.label)) },
                        )
                    }
                }
            }
        },
    ) { padding ->
        Box(Modifier.padding(padding)) {
            when (screen) {
                Screen.HOME -> HomeScreen(store, onPairAgain = { chosen = Screen.PAIR }, onBatteryGuide = { chosen = Screen.GUIDE })
                Screen.GUIDE -> BatteryGuideScreen(onDone = { chosen = Screen.HOME })
                Screen.STATS -> StatsScreen(store)
                Screen.SETTINGS -> SettingsScreen(store)
                Screen.PAIR ->
                    PairScreen(
                        store = store,
                        openedLink = openedLink,
                        repairing = pairing != null,
                        onDone = {
                            onLinkTaken()
                            chosen = Screen.HOME
                        },
                    )
            }
        }
    }
}

/** Material 3, light or dark with the system; wallpaper colours on Android 12+. */
@Composable
private fun TraffixTheme(content: @Composable () -> Unit) {
    val dark = isSystemInDarkTheme()
    val context = LocalContext.current
    val colors =
        when {
            Build.VERSION.SDK_INT >= Build.VERSION_CODES.S -> if (dark) dynamicDarkColorScheme(context) else dynamicLightColorScheme(context)
            dark -> darkColorScheme()
            else -> lightColorScheme()
        }
    MaterialTheme(colorScheme = colors, content = content)
}

// ---- small pieces shared by the screens ----

/** A scrolling screen with the standard margins. */
@Composable
internal fun ScreenColumn(content: @Composable ColumnScope.() -> Unit) {
    Column(
        Modifier.fillMaxSize().verticalScroll(rememberScrollState()).padding(16.dp),
        verticalArrangement = Arrangement.spacedBy(12.dp),
        content = content,
    )
}

/** A titled card. */
@Composable
internal fun Section(title: String, content: @Composable ColumnScope.() -> Unit) {
    Card(Modifier.fillMaxWidth()) {
        Column(Modifier.padding(16.dp), verticalArrangement = Arrangement.spacedBy(8.dp)) {
            Text(title, style = MaterialTheme.typography.titleMedium)
            content()
        }
    }
}

/** One "label ……… value" line. */
@Composable
internal fun ValueRow(label: String, value: String) {
    Row(Modifier.fillMaxWidth(), horizontalArrangement = Arrangement.SpaceBetween) {
        Text(label, style = MaterialTheme.typography.bodyMedium, modifier = Modifier.weight(1f))
        Text(value, style = MaterialTheme.typography.bodyMedium, textAlign = TextAlign.End, modifier = Modifier.weight(1f))
    }
}
